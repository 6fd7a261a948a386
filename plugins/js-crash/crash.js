// js-crash: a handler with a bug on request, to prove that an uncaught JavaScript exception
// reaches the dead-letter reason (pipelines/tests/crash.test.yaml).
//
// The payload `crash` throws a `CrashRequested` error two calls deep; `handled` is answered with
// how many messages this instance has handled, itself included (so a fresh instance answers 1);
// anything else is passed on unchanged.
//
// Built with componentize-js against plugins/js-crash/wit (world `crash`): see
// scripts/build-handlers.sh.

import { log } from 'sluice:plugin/log@0.1.0';

/**
 * Wraps an exported interface's functions so that an exception escaping one (a bug, not a
 * handler error) is logged as `panic: …` before it goes on: componentize-js then traps, and the
 * host puts that line in the dead-letter reason, as it does a Rust panic's message.
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

class CrashRequested extends Error {
  name = 'CrashRequested';
}

/** Messages this instance has handled: module state, which lives as long as the instance. */
let handled = 0;

export const messageHandler = logCrashes({
  handle(msg) {
    return handle(msg);
  },
  handleBatch(msgs) {
    return msgs.map((msg) => ({ tag: 'ok', val: handle(msg) }));
  },
});

function handle(msg) {
  handled++;
  let payload = msg.payload;
  const text = new TextDecoder().decode(payload);
  if (text === 'crash') explode();
  if (text === 'handled') payload = new TextEncoder().encode(String(handled));
  return [{ payload, key: msg.key, headers: msg.headers, route: undefined }];
}

function explode() {
  throw new CrashRequested('asked to crash');
}
