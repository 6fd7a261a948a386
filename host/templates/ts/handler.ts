// {{name}}: a Sluice handler in TypeScript.
//
// Adds `handled_by` (and the `tag` setting, when the pipeline gives one) to each JSON object it
// receives; anything else is refused as `invalid`, which sends it to the dead-letter sink.
//
// The types come from the world in wit/: build.sh has `jco guest-types` declare them in
// generated/, then `tsc` checks this file against them.

import type { HandlerError, Message, Output } from 'sluice:plugin/types@0.1.0';
import { log } from 'sluice:plugin/log@0.1.0';

type Exports = typeof import('sluice:guest/handler');

/** The `tag` setting from the pipeline's `config`, set once by `init`. */
let tag: string | null = null;

/** Thrown to return an `err`: componentize-js lowers the thrown value's own `payload`. */
class Failure<T> {
  constructor(readonly payload: T) {}
}

const invalid = (reason: string) => new Failure<HandlerError>({ tag: 'invalid', val: reason });

export const lifecycle = logCrashes<Exports['lifecycle']>({
  init(config) {
    for (const [key, value] of config) {
      if (key !== 'tag') throw new Failure(`unknown setting \`${key}\` (expected \`tag\`)`);
      tag = value;
    }
  },
});

export const messageHandler = logCrashes<Exports['messageHandler']>({
  handle(msg) {
    return handle(msg);
  },
  handleBatch(msgs) {
    return msgs.map((msg) => {
      try {
        return { tag: 'ok', val: handle(msg) };
      } catch (e) {
        if (e instanceof Failure) return { tag: 'err', val: (e as Failure<HandlerError>).payload };
        throw e;
      }
    });
  },
});

function handle(msg: Message): Output[] {
  let event: unknown;
  try {
    event = JSON.parse(new TextDecoder().decode(msg.payload));
  } catch (e) {
    throw invalid(`payload is not a JSON object: ${(e as Error).message}`);
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw invalid('payload is not a JSON object');
  }
  const object = event as Record<string, unknown>;
  object.handled_by = '{{name}}';
  if (tag !== null) object.tag = tag;
  return [
    {
      payload: new TextEncoder().encode(JSON.stringify(object)),
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
function logCrashes<T extends object>(iface: T): T {
  const wrapped: Record<string, unknown> = {};
  const fns = Object.entries(iface) as Array<[string, (...args: unknown[]) => unknown]>;
  for (const [name, fn] of fns) {
    wrapped[name] = (...args: unknown[]) => {
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
  return wrapped as T;
}

/** `Type: message at frame, from frame, from frame`: the innermost frames of the error's stack. */
function describeCrash(e: unknown): string {
  if (!(e instanceof Error)) return `uncaught ${typeof e}: ${String(e)}`;
  const frames = String(e.stack ?? '').split('\n').filter(Boolean).slice(0, 3);
  return `${e.name}: ${e.message} at ${frames.join(', from ')}`;
}
