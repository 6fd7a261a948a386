// The call's results, built in the arena in the canonical ABI's layout, where the host reads
// them when the call returns.

import * as arena from "./arena";
import { Bytes, Message, PAIR_SIZE } from "./message";

/** A growing list of fixed-size elements in the arena; it moves (copies) when it grows. */
class List {
  ptr: usize = 0;
  length: i32 = 0;
  private capacity: i32 = 0;

  constructor(private elementSize: usize) {}

  /** Room for one more element; returns its address. */
  push(): usize {
    if (this.length == this.capacity) {
      const capacity = max(4, this.capacity * 2);
      this.ptr = arena.realloc(this.ptr, <usize>this.capacity * this.elementSize, 8, <usize>capacity * this.elementSize);
      this.capacity = capacity;
    }
    return this.ptr + <usize>(this.length++) * this.elementSize;
  }

  clear(): void {
    this.ptr = 0;
    this.length = 0;
    this.capacity = 0;
  }
}

/** An output's headers: `list<tuple<string, string>>`. */
@final
export class Headers {
  private list: List = new List(PAIR_SIZE);

  /** The message's headers, to add to; they are not copied, only pointed at. */
  static of(msg: Message): Headers {
    const headers = new Headers();
    const count = msg.headerCount;
    for (let i = 0; i < count; i++) {
      memory.copy(headers.list.push(), msg.headersPtr + <usize>i * PAIR_SIZE, PAIR_SIZE);
    }
    return headers;
  }

  get length(): i32 {
    return this.list.length;
  }

  add(name: string, value: string): Headers {
    return this.addBytes(Bytes.of(name), Bytes.of(value));
  }

  addBytes(name: Bytes, value: Bytes): Headers {
    const at = this.list.push();
    store<usize>(at, name.ptr);
    store<i32>(at, name.length, 4);
    store<usize>(at, value.ptr, 8);
    store<i32>(at, value.length, 12);
    return this;
  }

  get ptr(): usize {
    return this.list.ptr;
  }
}

/** Size of one `output` record: payload @0, key option @8, headers @20, route option @28. */
const OUTPUT_SIZE: usize = 40;

/** What a call produces: zero outputs filters the message, several fan it out. */
@final
export class Outputs {
  private list: List = new List(OUTPUT_SIZE);

  /**
   * Add an output. `route` names the sink (null: the pipeline's default sink); `key` and
   * `headers` default to none.
   */
  push(payload: Bytes, key: Bytes | null = null, headers: Headers | null = null, route: string | null = null): void {
    const at = this.list.push();
    store<usize>(at, payload.ptr);
    store<i32>(at, payload.length, 4);
    if (key != null) {
      store<u8>(at, 1, 8);
      store<usize>(at, key.ptr, 12);
      store<i32>(at, key.length, 16);
    } else {
      store<u8>(at, 0, 8);
    }
    if (headers != null) {
      store<usize>(at, headers.ptr, 20);
      store<i32>(at, headers.length, 24);
    } else {
      store<usize>(at, 0, 20);
      store<i32>(at, 0, 24);
    }
    if (route != null) {
      const name = Bytes.of(route);
      store<u8>(at, 1, 28);
      store<usize>(at, name.ptr, 32);
      store<i32>(at, name.length, 36);
    } else {
      store<u8>(at, 0, 28);
    }
  }

  get length(): i32 {
    return this.list.length;
  }

  /** For the exports: the list to hand to the host, then a fresh one for the next message. */
  get ptr(): usize {
    return this.list.ptr;
  }

  clear(): void {
    this.list.clear();
  }
}

/** The WIT `handler-error` variant's cases. */
export enum ErrorKind {
  /** Temporary: the host retries with backoff, then dead-letters. */
  Transient = 0,
  /** Will never succeed: dead-lettered at once. */
  Fatal = 1,
  /** The payload is malformed: dead-lettered or discarded, by the pipeline's `on_invalid`. */
  Invalid = 2,
}

/** Why a handler produced no outputs: return one from the handle function. */
@final
export class HandlerError {
  constructor(public readonly kind: ErrorKind, public readonly reason: string) {}
}

export function transient(reason: string): HandlerError {
  return new HandlerError(ErrorKind.Transient, reason);
}

export function fatal(reason: string): HandlerError {
  return new HandlerError(ErrorKind.Fatal, reason);
}

export function invalid(reason: string): HandlerError {
  return new HandlerError(ErrorKind.Invalid, reason);
}
