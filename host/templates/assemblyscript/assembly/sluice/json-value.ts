// JSON values, as serde_json (the Rust SDK's JSON) sees them: integers stay exact (u64 or i64),
// other numbers are f64, and an object holds each key once (the last one read wins) in key order.
//
// Strings are kept as UTF-8 in guest memory, usually pointing into the payload itself, so a
// value read from a message is valid until the call returns: keep `toString()`s, not values.

import { Bytes, compareUtf8 } from "./message";

export enum JsonKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

export abstract class JsonValue {
  constructor(public readonly kind: JsonKind) {}

  asBool(): JsonBool | null {
    return this.kind == JsonKind.Bool ? changetype<JsonBool>(this) : null;
  }

  asNumber(): JsonNumber | null {
    return this.kind == JsonKind.Number ? changetype<JsonNumber>(this) : null;
  }

  asString(): JsonString | null {
    return this.kind == JsonKind.String ? changetype<JsonString>(this) : null;
  }

  asArray(): JsonArray | null {
    return this.kind == JsonKind.Array ? changetype<JsonArray>(this) : null;
  }

  asObject(): JsonObject | null {
    return this.kind == JsonKind.Object ? changetype<JsonObject>(this) : null;
  }
}

@final
export class JsonNull extends JsonValue {
  static readonly VALUE: JsonNull = new JsonNull();

  private constructor() {
    super(JsonKind.Null);
  }
}

@final
export class JsonBool extends JsonValue {
  static readonly TRUE: JsonBool = new JsonBool(true);
  static readonly FALSE: JsonBool = new JsonBool(false);

  private constructor(public readonly value: bool) {
    super(JsonKind.Bool);
  }

  static of(value: bool): JsonBool {
    return value ? JsonBool.TRUE : JsonBool.FALSE;
  }
}

/** An integer (`magnitude`, `negative`) or a float (`float`). */
@final
export class JsonNumber extends JsonValue {
  private constructor(
    public readonly isInteger: bool,
    public readonly negative: bool,
    public readonly magnitude: u64,
    public readonly float: f64,
  ) {
    super(JsonKind.Number);
  }

  static ofI64(value: i64): JsonNumber {
    return new JsonNumber(true, value < 0, value < 0 ? <u64>(0 - value) : <u64>value, 0);
  }

  static ofU64(value: u64): JsonNumber {
    return new JsonNumber(true, false, value, 0);
  }

  /** A negative integer, -`magnitude` (at most 2^63). */
  static ofNegative(magnitude: u64): JsonNumber {
    return new JsonNumber(true, true, magnitude, 0);
  }

  /** A float; NaN and the infinities are written as `null`, as serde_json does. */
  static ofF64(value: f64): JsonNumber {
    return new JsonNumber(false, false, 0, value);
  }

  toF64(): f64 {
    if (!this.isInteger) return this.float;
    return this.negative ? -<f64>this.magnitude : <f64>this.magnitude;
  }

  /** The integer (wrapped past i64), or the float truncated toward zero. */
  toI64(): i64 {
    if (!this.isInteger) return <i64>this.float;
    return this.negative ? 0 - <i64>this.magnitude : <i64>this.magnitude;
  }
}

/**
 * A string as its UTF-8 bytes. `plain` says no byte needs escaping when it is written (it came
 * from a payload without escapes); otherwise the writer escapes it as serde_json does.
 */
@final
export class JsonString extends JsonValue {
  constructor(public readonly ptr: usize, public readonly length: i32, public readonly plain: bool) {
    super(JsonKind.String);
  }

  static of(text: string): JsonString {
    const bytes = Bytes.of(text);
    return new JsonString(bytes.ptr, bytes.length, false);
  }

  get bytes(): Bytes {
    return new Bytes(this.ptr, this.length);
  }

  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, <usize>this.length);
  }

  equals(text: string): bool {
    return compareUtf8(this.ptr, this.length, text) == 0;
  }

  /** Order by UTF-8 bytes, which is by code point: Rust's `String` order. */
  compare(other: JsonString): i32 {
    return compareBytes(this.ptr, this.length, other.ptr, other.length);
  }
}

function compareBytes(a: usize, aLength: i32, b: usize, bLength: i32): i32 {
  const order = memory.compare(a, b, <usize>min(aLength, bLength));
  return order != 0 ? order : aLength - bLength;
}

@final
export class JsonArray extends JsonValue {
  constructor(public readonly items: Array<JsonValue> = []) {
    super(JsonKind.Array);
  }
}

/** An object: its members sorted by key, each key once. */
@final
export class JsonObject extends JsonValue {
  /**
   * Keys and values interleaved (key 2i, value 2i + 1). The reader passes them sorted, each key
   * once; `new JsonObject()` starts empty.
   */
  constructor(private members: StaticArray<JsonValue> = new StaticArray<JsonValue>(0)) {
    super(JsonKind.Object);
  }

  get length(): i32 {
    return this.members.length >> 1;
  }

  key(index: i32): JsonString {
    return changetype<JsonString>(this.members[2 * index]);
  }

  value(index: i32): JsonValue {
    return this.members[2 * index + 1];
  }

  get(name: string): JsonValue | null {
    const at = this.find(name);
    return at >= 0 ? unchecked(this.members[2 * at + 1]) : null;
  }

  has(name: string): bool {
    return this.find(name) >= 0;
  }

  /** Set `name` to `value`, replacing its value if it is there. */
  set(name: string, value: JsonValue): void {
    const at = this.find(name);
    if (at >= 0) {
      this.members[2 * at + 1] = value;
      return;
    }
    const insert = 2 * (-at - 1);
    const old = this.members;
    const members = new StaticArray<JsonValue>(old.length + 2);
    for (let k = 0; k < insert; k++) unchecked((members[k] = old[k]));
    members[insert] = JsonString.of(name);
    members[insert + 1] = value;
    for (let k = insert; k < old.length; k++) unchecked((members[k + 2] = old[k]));
    this.members = members;
  }

  /** The index of the member `name`, or -(where it would go) - 1. */
  private find(name: string): i32 {
    let low = 0;
    let high = this.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const key = changetype<JsonString>(unchecked(this.members[2 * middle]));
      const order = compareUtf8(key.ptr, key.length, name);
      if (order < 0) low = middle + 1;
      else if (order > 0) high = middle - 1;
      else return middle;
    }
    return -low - 1;
  }
}
