// {{name}}: a Sluice handler in JavaScript.
//
// Adds `handled_by` (and the `tag` setting, when the pipeline gives one) to each JSON object it
// receives; anything else is refused as `invalid`, which sends it to the dead-letter sink.

/** The `tag` setting from the pipeline's `config`, set once by `init`. */
let tag = null;

/** Thrown to return an `err`: componentize-js lowers the thrown value's own `payload`. */
class Failure {
  constructor(payload) {
    this.payload = payload;
  }
}

export const lifecycle = {
  init(config) {
    for (const [key, value] of config) {
      if (key !== 'tag') throw new Failure(`unknown setting \`${key}\` (expected \`tag\`)`);
      tag = value;
    }
  },
};

export const messageHandler = {
  handle(msg) {
    return handle(msg);
  },
  handleBatch(msgs) {
    return msgs.map((msg) => {
      try {
        return { tag: 'ok', val: handle(msg) };
      } catch (e) {
        if (e instanceof Failure) return { tag: 'err', val: e.payload };
        throw e;
      }
    });
  },
};

function handle(msg) {
  let event;
  try {
    event = JSON.parse(new TextDecoder().decode(msg.payload));
  } catch (e) {
    throw new Failure({ tag: 'invalid', val: `payload is not a JSON object: ${e.message}` });
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw new Failure({ tag: 'invalid', val: 'payload is not a JSON object' });
  }
  event.handled_by = '{{name}}';
  if (tag !== null) event.tag = tag;
  return [
    {
      payload: new TextEncoder().encode(JSON.stringify(event)),
      key: msg.key,
      headers: [...msg.headers, ['x-handled-by', '{{name}}']],
      route: undefined,
    },
  ];
}
