// What the host offers every handler: `log` and `counters` (sluice:plugin@0.1.0), and the
// `abort` that AssemblyScript calls on a failed assertion, a `throw` or a runtime error.

import * as arena from "./arena";

// @ts-ignore: decorator
@external("sluice:plugin/log@0.1.0", "log")
declare function hostLog(level: i32, ptr: usize, len: usize): void;

// @ts-ignore: decorator
@external("sluice:plugin/counters@0.1.0", "add")
declare function hostCounterAdd(ptr: usize, len: usize, delta: u64): void;

/** The WIT `log.level` enum. */
export enum Level {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
}

/** Write a line to the host's log, tagged there with the pipeline, plugin and message id. */
export function log(level: Level, message: string): void {
  const len = String.UTF8.byteLength(message);
  const ptr = arena.alloc(len);
  String.UTF8.encodeUnsafe(changetype<usize>(message), message.length, ptr, false, String.UTF8.ErrorMode.REPLACE);
  hostLog(level, ptr, len);
}

/** Add `delta` to the handler counter `name` (a host metric). */
export function count(name: string, delta: u64 = 1): void {
  const len = String.UTF8.byteLength(name);
  const ptr = arena.alloc(len);
  String.UTF8.encodeUnsafe(changetype<usize>(name), name.length, ptr, false, String.UTF8.ErrorMode.REPLACE);
  hostCounterAdd(ptr, len, delta);
}

/** Room for the panic line; a longer one is cut. */
const PANIC_MAX: i32 = 1024;
const panicBuffer = memory.data(PANIC_MAX);
let panicLen: i32 = 0;

/**
 * Replaces AssemblyScript's `abort` (asc `--use abort=.../sluice/host/abort`): logs
 * `panic: <message> at <file>:<line>:<column>` at level error, which the host appends to the
 * trap's reason in the dead-letter record, then traps. It allocates nothing, as the abort may
 * come from a failed allocation.
 */
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  panicLen = 0;
  panicText("panic: ");
  panicText(message != null ? message : "abort");
  if (fileName != null) {
    panicText(" at ");
    panicText(fileName);
    panicText(":");
    panicNumber(line);
    panicText(":");
    panicNumber(column);
  }
  hostLog(Level.Error, panicBuffer, panicLen);
  unreachable();
}

/** Append `text` as UTF-8 (a lone surrogate as U+FFFD), cut at a whole character. */
function panicText(text: string): void {
  for (let i = 0; i < text.length; i++) {
    let c = <u32>text.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) {
      const d = <u32>text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
    const size = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (panicLen + size > PANIC_MAX) return;
    const at = panicBuffer + <usize>panicLen;
    if (size == 1) {
      store<u8>(at, c);
    } else if (size == 2) {
      store<u8>(at, 0xc0 | (c >> 6));
      store<u8>(at, 0x80 | (c & 0x3f), 1);
    } else if (size == 3) {
      store<u8>(at, 0xe0 | (c >> 12));
      store<u8>(at, 0x80 | ((c >> 6) & 0x3f), 1);
      store<u8>(at, 0x80 | (c & 0x3f), 2);
    } else {
      store<u8>(at, 0xf0 | (c >> 18));
      store<u8>(at, 0x80 | ((c >> 12) & 0x3f), 1);
      store<u8>(at, 0x80 | ((c >> 6) & 0x3f), 2);
      store<u8>(at, 0x80 | (c & 0x3f), 3);
    }
    panicLen += size;
  }
}

function panicNumber(n: u32): void {
  const digits = memory.data(10);
  let count = 0;
  do {
    store<u8>(digits + <usize>(count++), 0x30 + n % 10);
    n /= 10;
  } while (n != 0);
  while (count > 0 && panicLen < PANIC_MAX) {
    store<u8>(panicBuffer + <usize>(panicLen++), load<u8>(digits + <usize>(--count)));
  }
}
