// A JSON writer that writes what serde_json writes for the same value: compact, object keys in
// order, strings escaped its way, floats in its shortest form (`12.5`, `100.0`, `1e+16`).

import * as arena from "./arena";
import * as float from "./json-float";
import { Bytes } from "./message";
import {
  JsonArray,
  JsonBool,
  JsonKind,
  JsonNumber,
  JsonObject,
  JsonString,
  JsonValue,
} from "./json-value";

/** `value` as compact JSON, in the arena. */
export function stringify(value: JsonValue): Bytes {
  const out = new Writer();
  out.value(value);
  return new Bytes(out.ptr, out.length);
}

const HEX = "0123456789abcdef";

/** Decimal digits of a u64, at most 20. */
const digits = memory.data(20);

class Writer {
  ptr: usize = 0;
  length: i32 = 0;
  private capacity: i32 = 0;

  /** Room for `n` more bytes; the buffer is the arena's last allocation, so it grows in place. */
  @inline
  private reserve(n: i32): usize {
    if (this.length + n > this.capacity) this.grow(n);
    return this.ptr + <usize>this.length;
  }

  private grow(n: i32): void {
    const capacity = max(256, max(this.length + n, this.capacity * 2));
    this.ptr = arena.realloc(this.ptr, <usize>this.capacity, 1, <usize>capacity);
    this.capacity = capacity;
  }

  @inline
  private byte(c: i32): void {
    store<u8>(this.reserve(1), c);
    this.length++;
  }

  private bytes(from: usize, n: i32): void {
    memory.copy(this.reserve(n), from, <usize>n);
    this.length += n;
  }

  private ascii(text: string): void {
    const at = this.reserve(text.length);
    for (let k = 0; k < text.length; k++) store<u8>(at + <usize>k, text.charCodeAt(k));
    this.length += text.length;
  }

  value(value: JsonValue): void {
    switch (value.kind) {
      case JsonKind.Null:
        this.ascii("null");
        break;
      case JsonKind.Bool:
        this.ascii(changetype<JsonBool>(value).value ? "true" : "false");
        break;
      case JsonKind.Number:
        this.number(changetype<JsonNumber>(value));
        break;
      case JsonKind.String:
        this.string(changetype<JsonString>(value));
        break;
      case JsonKind.Array: {
        const items = changetype<JsonArray>(value).items;
        this.byte(0x5b);
        for (let k = 0; k < items.length; k++) {
          if (k > 0) this.byte(0x2c);
          this.value(items[k]);
        }
        this.byte(0x5d);
        break;
      }
      default: {
        const object = changetype<JsonObject>(value);
        this.byte(0x7b);
        for (let k = 0; k < object.length; k++) {
          if (k > 0) this.byte(0x2c);
          this.string(object.key(k));
          this.byte(0x3a);
          this.value(object.value(k));
        }
        this.byte(0x7d);
      }
    }
  }

  private string(s: JsonString): void {
    this.byte(0x22);
    if (s.plain) {
      this.bytes(s.ptr, s.length);
    } else {
      for (let k = 0; k < s.length; k++) {
        const c = <i32>load<u8>(s.ptr + <usize>k);
        if (c == 0x22 || c == 0x5c) {
          this.byte(0x5c);
          this.byte(c);
        } else if (c < 0x20) {
          this.byte(0x5c);
          if (c == 0x08) this.byte(0x62);
          else if (c == 0x09) this.byte(0x74);
          else if (c == 0x0a) this.byte(0x6e);
          else if (c == 0x0c) this.byte(0x66);
          else if (c == 0x0d) this.byte(0x72);
          else {
            this.ascii("u00");
            this.byte(HEX.charCodeAt(c >> 4));
            this.byte(HEX.charCodeAt(c & 0xf));
          }
        } else {
          this.byte(c);
        }
      }
    }
    this.byte(0x22);
  }

  private number(n: JsonNumber): void {
    if (n.isInteger) {
      if (n.negative) this.byte(0x2d);
      this.unsigned(n.magnitude);
    } else {
      this.float(n.float);
    }
  }

  private unsigned(v: u64): void {
    let count = 0;
    do {
      store<u8>(digits + <usize>(count++), <i32>(v % 10) + 0x30);
      v /= 10;
    } while (v != 0);
    while (count > 0) this.byte(load<u8>(digits + <usize>(--count)));
  }

  /**
   * serde_json's float form: the shortest digits that read back to the same number; plain for
   * decimal exponents -5..=15 with at least one digit after the point, otherwise `d.ddde±x`.
   */
  private float(f: f64): void {
    if (!isFinite(f)) {
      this.ascii("null");
      return;
    }
    if (f < 0 || (f == 0 && 1 / f < 0)) this.byte(0x2d);
    if (f == 0) {
      this.ascii("0.0");
      return;
    }
    const len = float.shortest(Math.abs(f));
    const exp = float.exponent;
    if (exp >= -5 && exp <= 15) {
      if (len - 1 <= exp) {
        this.bytes(float.digits, len);
        for (let k = len; k <= exp; k++) this.byte(0x30);
        this.ascii(".0");
      } else if (exp >= 0) {
        this.bytes(float.digits, exp + 1);
        this.byte(0x2e);
        this.bytes(float.digits + <usize>(exp + 1), len - exp - 1);
      } else {
        this.ascii("0.");
        for (let k = 0; k < -exp - 1; k++) this.byte(0x30);
        this.bytes(float.digits, len);
      }
    } else {
      this.byte(load<u8>(float.digits));
      if (len > 1) {
        this.byte(0x2e);
        this.bytes(float.digits + 1, len - 1);
      }
      this.byte(0x65);
      this.byte(exp < 0 ? 0x2d : 0x2b);
      this.unsigned(<u64>(exp < 0 ? -exp : exp));
    }
  }
}
