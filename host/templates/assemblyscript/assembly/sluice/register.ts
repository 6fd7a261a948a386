// The handler's functions, named once by the entry file; exports.ts calls them.

import { Config, Message } from "./message";
import { HandlerError, Outputs } from "./output";

/** Handle one message: push outputs to `out` and return null, or return the error. */
export type HandleFn = (msg: Message, out: Outputs) => HandlerError | null;

/** Check and keep the handler's settings; return null, or why they are refused. */
export type InitFn = (config: Config) => string | null;

export let handleFn: HandleFn | null = null;
export let initFn: InitFn | null = null;

/**
 * Name the handler's functions; call it once at the top level of the entry file. Without an
 * `init`, any settings are accepted and ignored.
 */
export function register(handle: HandleFn, init: InitFn | null = null): void {
  handleFn = handle;
  initFn = init;
}
