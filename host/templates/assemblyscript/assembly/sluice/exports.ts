// The component's core exports, in the canonical ABI. The entry file re-exports them
// (`export * from "./sluice/exports"`), so this file exports nothing else. asc cannot spell their
// real names (`sluice:plugin/...#handle`), so names.mjs, an asc transform, renames them in the
// compiled module.

import * as arena from "./arena";
import { Bytes, Config, Message } from "./message";
import { Outputs } from "./output";
import { handleFn, initFn } from "./register";

// One of each, reused for every message: the views are re-pointed, not re-allocated.
const message = new Message(0);
const outputs = new Outputs();

/** The `result<list<output>, handler-error>` return area (16 bytes) of `handle`. */
const handleResult = memory.data(16, 8);

/** The `result<_, string>` return area (12 bytes) of `init`. */
const initResult = memory.data(12, 8);

/** Run the handler on the message at `msgPtr` and write its result at `resultPtr`. */
function handleOne(msgPtr: usize, resultPtr: usize): void {
  const handle = handleFn;
  if (handle == null) throw new Error("no handler: call register() in the entry file");
  message.ptr = msgPtr;
  outputs.clear();
  const error = handle(message, outputs);
  if (error == null) {
    store<u8>(resultPtr, 0);
    store<usize>(resultPtr, outputs.ptr, 4);
    store<i32>(resultPtr, outputs.length, 8);
  } else {
    const reason = Bytes.of(error.reason);
    store<u8>(resultPtr, 1);
    store<u8>(resultPtr, <u8>error.kind, 4);
    store<usize>(resultPtr, reason.ptr, 8);
    store<i32>(resultPtr, reason.length, 12);
  }
}

/** `sluice:plugin/message-handler@0.1.0#handle` */
export function sluice_handle(msgPtr: usize): usize {
  handleOne(msgPtr, handleResult);
  return handleResult;
}

/** `sluice:plugin/message-handler@0.1.0#handle-batch`: one 16-byte result per 112-byte message. */
export function sluice_handle_batch(msgsPtr: usize, count: i32): usize {
  const results = arena.alloc(8 + <usize>count * 16, 8);
  for (let i = 0; i < count; i++) {
    handleOne(msgsPtr + <usize>i * 112, results + 8 + <usize>i * 16);
  }
  store<usize>(results, results + 8);
  store<i32>(results, count, 4);
  return results;
}

/** `sluice:plugin/lifecycle@0.1.0#init` */
export function sluice_init(configPtr: usize, count: i32): usize {
  const init = initFn;
  const error = init != null ? init(new Config(configPtr, count)) : null;
  if (error == null) {
    store<u8>(initResult, 0);
  } else {
    const reason = Bytes.of(error);
    store<u8>(initResult, 1);
    store<usize>(initResult, reason.ptr, 4);
    store<i32>(initResult, reason.length, 8);
  }
  return initResult;
}

/**
 * The `cabi_post_*` functions: the host has read the results, so the arena is reset and the
 * garbage of the call is collected. Objects are collected here, between calls, and never during
 * one (asconfig.json's `"runtime": "minimal"`): the heap then holds only what the handler keeps
 * in globals, and no collection can run while the ABI layer holds objects the collector does not
 * see. A collection marks everything the handler keeps, once per call (a batch of messages).
 */
function afterCall(): void {
  arena.reset();
  __collect();
}

export function sluice_post_handle(_result: usize): void {
  afterCall();
}

export function sluice_post_handle_batch(_result: usize): void {
  afterCall();
}

export function sluice_post_init(_result: usize): void {
  afterCall();
}

export function cabi_realloc(old: usize, oldSize: usize, align: usize, newSize: usize): usize {
  return arena.realloc(old, oldSize, align, newSize);
}
