// {{name}}: a Sluice handler in JavaScript.
//
// Adds `handled_by` (and the `tag` setting, when the pipeline gives one) to each JSON object it
// receives; anything else is refused as `invalid`, which sends it to the dead-letter sink.

import { log } from 'sluice:plugin/log@0.1.0';

/** The `tag` setting from the pipeline's `config`, set once by `init`. */
let tag = null;

/** Thrown to return an `err`: componentize-js lowers the thrown value's own `payload`. */
class Failure {
  constructor(payload) {
    this.payload = payload;
  }
}

export const lifecycle = logCrashes({
  init(config) {
    for (const [key, value] of config) {
      if (key !== 'tag') throw new Failure(`unknown setting \`${key}\` (expected \`tag\`)`);
      tag = value;
    }
  },
});

export const messageHandler = logCrashes({
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
});

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

/**
 * Wraps an exported interface's functions so that an exception escaping one (a bug, not a
 * `Failure`) is logged as `panic: …` before it goes on: componentize-js then traps, and the host
 * puts that line in the dead-letter reason, as it does a Rust panic's message.
 */
function logCrashes(iface) {
  const wrapped = {};
  for (const [name, fn] of Object.entries(iface)) {
    wrapped[name] = (...args) => {
      try {
        return fn(...args);
      } catch (e) {
        // A thrown value with its own `payload` is a handler error, which componentize-js
        // returns as the `err` of the result: not a crash.
        if (!Object.hasOwn(Object(e), 'payload')) log('error', `panic: ${describeCrash(e)}`);
        throw e;
      }
    };
  }
  return wrapped;
}

/** `Type: message at frame, from frame, from frame`: the innermost frames of the error's stack. */
function describeCrash(e) {
  if (!(e instanceof Error)) return `uncaught ${typeof e}: ${String(e)}`;
  const frames = String(e.stack ?? '').split('\n').filter(Boolean).slice(0, 3);
  return `${e.name}: ${e.message} at ${frames.join(', from ')}`;
}
