// The call's inputs, read in place: the host writes each `message` record (and each `config`
// list) into guest memory in the canonical ABI's layout and passes its address. These views read
// that memory; it stays valid until the call returns (it is in the arena), so copy what you keep.

import * as arena from "./arena";

/** Bytes in guest memory: a payload, a key, or a string's UTF-8. */
@final
export class Bytes {
  constructor(public readonly ptr: usize, public readonly length: i32) {}

  /** `text` as UTF-8 in the arena (valid until the call returns). */
  static of(text: string): Bytes {
    const len = String.UTF8.byteLength(text);
    const ptr = arena.alloc(<usize>len);
    String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, ptr, false, String.UTF8.ErrorMode.REPLACE);
    return new Bytes(ptr, len);
  }

  /** A copy of `bytes` in the arena. */
  static copy(bytes: Uint8Array): Bytes {
    const ptr = arena.alloc(<usize>bytes.length);
    memory.copy(ptr, bytes.dataStart, <usize>bytes.length);
    return new Bytes(ptr, bytes.length);
  }

  /** The bytes decoded as UTF-8. */
  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, <usize>this.length);
  }

  /** A copy that outlives the call. */
  toUint8Array(): Uint8Array {
    const copy = new Uint8Array(this.length);
    memory.copy(copy.dataStart, this.ptr, <usize>this.length);
    return copy;
  }

  /** Whether the bytes are `text`'s UTF-8. */
  equals(text: string): bool {
    return compareUtf8(this.ptr, this.length, text) == 0;
  }
}

/**
 * Compare UTF-8 bytes with `text`'s UTF-8 (a lone surrogate as U+FFFD), byte by byte, without
 * encoding `text` anywhere: negative, zero or positive, as the bytes sort before, equal or after.
 */
export function compareUtf8(ptr: usize, length: i32, text: string): i32 {
  let at = 0;
  const n = text.length;
  for (let k = 0; k < n; k++) {
    let c = <u32>text.charCodeAt(k);
    if (c >= 0xd800 && c < 0xe000) {
      const next = k + 1 < n ? <u32>text.charCodeAt(k + 1) : 0;
      if (c < 0xdc00 && next >= 0xdc00 && next < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        k++;
      } else {
        c = 0xfffd;
      }
    }
    // The code point's UTF-8 bytes, first byte lowest.
    let bytes: u32;
    let count: i32;
    if (c < 0x80) {
      bytes = c;
      count = 1;
    } else if (c < 0x800) {
      bytes = (0xc0 | (c >> 6)) | ((0x80 | (c & 0x3f)) << 8);
      count = 2;
    } else if (c < 0x10000) {
      bytes = (0xe0 | (c >> 12)) | ((0x80 | ((c >> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16);
      count = 3;
    } else {
      bytes = (0xf0 | (c >> 18)) | ((0x80 | ((c >> 12) & 0x3f)) << 8) | ((0x80 | ((c >> 6) & 0x3f)) << 16) | ((0x80 | (c & 0x3f)) << 24);
      count = 4;
    }
    for (let j = 0; j < count; j++, at++) {
      if (at >= length) return -1;
      const order = <i32>load<u8>(ptr + <usize>at) - <i32>((bytes >> (8 * j)) & 0xff);
      if (order != 0) return order;
    }
  }
  return at < length ? 1 : 0;
}

function bytesAt(ptr: usize): Bytes {
  return new Bytes(load<usize>(ptr), load<i32>(ptr, 4));
}

function stringAt(ptr: usize): string {
  return String.UTF8.decodeUnsafe(load<usize>(ptr), load<usize>(ptr, 4));
}

/** Size of one `tuple<string, string>` in a list: two (pointer, length) pairs. */
export const PAIR_SIZE: usize = 16;

/**
 * One `message` record (112 bytes, align 8): id @0, key option @8, payload @20, headers @28,
 * metadata @40 (source @40, topic @48, partition option<s32> @56, offset option<s64> @64,
 * timestamp-ms option<s64> @80, received-ms @96, attempt @104).
 */
@final
export class Message {
  constructor(public ptr: usize) {}

  /** Unique within the source (broker message id, or source:partition:offset). */
  get id(): string {
    return stringAt(this.ptr);
  }

  get key(): Bytes | null {
    return load<u8>(this.ptr, 8) ? bytesAt(this.ptr + 12) : null;
  }

  get payload(): Bytes {
    return bytesAt(this.ptr + 20);
  }

  /** Address and count of the header list (`PAIR_SIZE` bytes each), for `Headers.of`. */
  get headersPtr(): usize {
    return load<usize>(this.ptr, 28);
  }

  get headerCount(): i32 {
    return load<i32>(this.ptr, 32);
  }

  headerName(index: i32): string {
    return stringAt(this.headersPtr + <usize>index * PAIR_SIZE);
  }

  headerValue(index: i32): string {
    return stringAt(this.headersPtr + <usize>index * PAIR_SIZE + 8);
  }

  /** The value of the first header called `name`, or null. */
  header(name: string): string | null {
    for (let i = 0; i < this.headerCount; i++) {
      const at = this.headersPtr + <usize>i * PAIR_SIZE;
      if (compareUtf8(load<usize>(at), load<i32>(at, 4), name) == 0) return stringAt(at + 8);
    }
    return null;
  }

  /** The pipeline's source name. */
  get source(): string {
    return stringAt(this.ptr + 40);
  }

  /** Topic, queue, subject or file the message came from. */
  get topic(): string {
    return stringAt(this.ptr + 48);
  }

  get hasPartition(): bool {
    return load<u8>(this.ptr, 56) != 0;
  }

  /** The partition, where `hasPartition`. */
  get partition(): i32 {
    return load<i32>(this.ptr, 60);
  }

  get hasOffset(): bool {
    return load<u8>(this.ptr, 64) != 0;
  }

  /** The offset within the topic/partition, where `hasOffset`. */
  get offset(): i64 {
    return load<i64>(this.ptr, 72);
  }

  get hasTimestamp(): bool {
    return load<u8>(this.ptr, 80) != 0;
  }

  /** Broker or producer timestamp (ms since the Unix epoch), where `hasTimestamp`. */
  get timestampMs(): i64 {
    return load<i64>(this.ptr, 88);
  }

  /** When the host received the message (ms since the Unix epoch): the handler's clock. */
  get receivedMs(): i64 {
    return load<i64>(this.ptr, 96);
  }

  /** Delivery attempt, 1 on the first. */
  get attempt(): u32 {
    return load<u32>(this.ptr, 104);
  }
}

/** `init`'s `config`: the handler's settings from the pipeline file, as (key, value) pairs. */
@final
export class Config {
  constructor(private ptr: usize, public readonly length: i32) {}

  key(index: i32): string {
    return stringAt(this.ptr + <usize>index * PAIR_SIZE);
  }

  value(index: i32): string {
    return stringAt(this.ptr + <usize>index * PAIR_SIZE + 8);
  }
}
