// A JSON reader with serde_json's rules and words: it accepts what the Rust SDK's `json::parse`
// accepts, reads numbers to the same values, and refuses the rest with serde_json's message
// (`expected value at line 1 column 1`), so a handler's dead-letter reasons match Rust's.
// AssemblyScript has no exceptions, so a failure is recorded on the parser and every step
// returns null after it.

import * as arena from "./arena";
import { Bytes } from "./message";
import { arrayFrom, mark, objectFrom, push, truncate } from "./json-members";
import { JsonBool, JsonNull, JsonNumber, JsonString, JsonValue } from "./json-value";

/** serde_json refuses the 128th level of nested arrays and objects. */
const RECURSION_LIMIT = 128;

const U64_MAX_DIV10: u64 = 1844674407370955161;
const U64_MAX_MOD10: u64 = 5;
const I64_MIN_MAGNITUDE: u64 = 9223372036854775808;

/** 1e0 ..= 1e308, correctly rounded (the compiler reads the literals): serde_json's `POW10`. */
const POW10: StaticArray<f64> = [
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23,
  1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32, 1e33, 1e34, 1e35,
  1e36, 1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47,
  1e48, 1e49, 1e50, 1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59,
  1e60, 1e61, 1e62, 1e63, 1e64, 1e65, 1e66, 1e67, 1e68, 1e69, 1e70, 1e71,
  1e72, 1e73, 1e74, 1e75, 1e76, 1e77, 1e78, 1e79, 1e80, 1e81, 1e82, 1e83,
  1e84, 1e85, 1e86, 1e87, 1e88, 1e89, 1e90, 1e91, 1e92, 1e93, 1e94, 1e95,
  1e96, 1e97, 1e98, 1e99, 1e100, 1e101, 1e102, 1e103, 1e104, 1e105, 1e106, 1e107,
  1e108, 1e109, 1e110, 1e111, 1e112, 1e113, 1e114, 1e115, 1e116, 1e117, 1e118, 1e119,
  1e120, 1e121, 1e122, 1e123, 1e124, 1e125, 1e126, 1e127, 1e128, 1e129, 1e130, 1e131,
  1e132, 1e133, 1e134, 1e135, 1e136, 1e137, 1e138, 1e139, 1e140, 1e141, 1e142, 1e143,
  1e144, 1e145, 1e146, 1e147, 1e148, 1e149, 1e150, 1e151, 1e152, 1e153, 1e154, 1e155,
  1e156, 1e157, 1e158, 1e159, 1e160, 1e161, 1e162, 1e163, 1e164, 1e165, 1e166, 1e167,
  1e168, 1e169, 1e170, 1e171, 1e172, 1e173, 1e174, 1e175, 1e176, 1e177, 1e178, 1e179,
  1e180, 1e181, 1e182, 1e183, 1e184, 1e185, 1e186, 1e187, 1e188, 1e189, 1e190, 1e191,
  1e192, 1e193, 1e194, 1e195, 1e196, 1e197, 1e198, 1e199, 1e200, 1e201, 1e202, 1e203,
  1e204, 1e205, 1e206, 1e207, 1e208, 1e209, 1e210, 1e211, 1e212, 1e213, 1e214, 1e215,
  1e216, 1e217, 1e218, 1e219, 1e220, 1e221, 1e222, 1e223, 1e224, 1e225, 1e226, 1e227,
  1e228, 1e229, 1e230, 1e231, 1e232, 1e233, 1e234, 1e235, 1e236, 1e237, 1e238, 1e239,
  1e240, 1e241, 1e242, 1e243, 1e244, 1e245, 1e246, 1e247, 1e248, 1e249, 1e250, 1e251,
  1e252, 1e253, 1e254, 1e255, 1e256, 1e257, 1e258, 1e259, 1e260, 1e261, 1e262, 1e263,
  1e264, 1e265, 1e266, 1e267, 1e268, 1e269, 1e270, 1e271, 1e272, 1e273, 1e274, 1e275,
  1e276, 1e277, 1e278, 1e279, 1e280, 1e281, 1e282, 1e283, 1e284, 1e285, 1e286, 1e287,
  1e288, 1e289, 1e290, 1e291, 1e292, 1e293, 1e294, 1e295, 1e296, 1e297, 1e298, 1e299,
  1e300, 1e301, 1e302, 1e303, 1e304, 1e305, 1e306, 1e307, 1e308,
];

let lastError = "";

/**
 * Parse `bytes` as one JSON value. On failure it returns null and `parseError()` says why, as
 * serde_json would: `<what> at line L column C`.
 */
export function parse(bytes: Bytes): JsonValue | null {
  const parser = new Parser(bytes.ptr, bytes.length);
  let value = parser.value();
  if (value != null && parser.ws() != -1) value = parser.fail("trailing characters", parser.i + 1);
  lastError = value == null ? parser.describe() : "";
  truncate(0); // after a failure, members of unfinished arrays and objects are left waiting
  return value;
}

/** Why the last `parse` failed. */
export function parseError(): string {
  return lastError;
}

@inline
function isDigit(c: i32): bool {
  return <u32>(c - 0x30) < 10;
}

class Parser {
  i: i32 = 0;
  private depth: i32 = 0;
  private failed: bool = false;
  private code: string = "";
  /** The byte index serde_json reports the error at (its `error` uses the bytes read so far,
   * its `peek_error` one more), and how far back from there the column points (for invalid
   * UTF-8, which serde_json finds at the closing quote). */
  private at: i32 = 0;
  private back: i32 = 0;

  constructor(private b: usize, private n: i32) {}

  @inline
  private byte(index: i32): i32 {
    return load<u8>(this.b + <usize>index);
  }

  fail(code: string, at: i32, back: i32 = 0): JsonValue | null {
    if (!this.failed) {
      this.failed = true;
      this.code = code;
      this.at = min(at, this.n);
      this.back = back;
    }
    return null;
  }

  /** `<code> at line L column C`, the position counted in bytes, as serde_json counts it. */
  describe(): string {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < this.at; k++) {
      if (this.byte(k) == 0x0a) {
        line++;
        lineStart = k + 1;
      }
    }
    const column = max(0, this.at - lineStart - this.back);
    return `${this.code} at line ${line} column ${column}`;
  }

  /** Skip whitespace; the next byte, or -1 at the end. */
  ws(): i32 {
    while (this.i < this.n) {
      const c = this.byte(this.i);
      if (c == 0x20 || c == 0x0a || c == 0x09 || c == 0x0d) this.i++;
      else return c;
    }
    return -1;
  }

  value(): JsonValue | null {
    const c = this.ws();
    switch (c) {
      case -1:
        return this.fail("EOF while parsing a value", this.i);
      case 0x6e: // n
        this.i++;
        return this.ident("ull") ? JsonNull.VALUE : null;
      case 0x74: // t
        this.i++;
        return this.ident("rue") ? JsonBool.TRUE : null;
      case 0x66: // f
        this.i++;
        return this.ident("alse") ? JsonBool.FALSE : null;
      case 0x2d: // -
        this.i++;
        return this.number(false);
      case 0x22: // "
        this.i++;
        return this.string();
      case 0x5b: // [
        return this.array();
      case 0x7b: // {
        return this.object();
      default:
        if (isDigit(c)) return this.number(true);
        return this.fail("expected value", this.i + 1);
    }
  }

  private ident(rest: string): bool {
    for (let k = 0; k < rest.length; k++) {
      if (this.i >= this.n) {
        this.fail("EOF while parsing a value", this.i);
        return false;
      }
      if (this.byte(this.i++) != rest.charCodeAt(k)) {
        this.fail("expected ident", this.i);
        return false;
      }
    }
    return true;
  }

  // A number, read as serde_json reads one (without its `float_roundtrip` feature): integers
  // that fit in u64 (i64 when negative) stay integers, the rest become f64 by its own
  // conversion, which is not always the correctly rounded one.
  private number(positive: bool): JsonValue | null {
    const n = this.n;
    if (this.i >= n) return this.fail("EOF while parsing a value", this.i);
    const intStart = this.i;
    const first = this.byte(this.i++);
    if (first == 0x30) {
      if (this.i < n && isDigit(this.byte(this.i))) return this.fail("invalid number", this.i + 1);
    } else if (isDigit(first)) {
      while (this.i < n && isDigit(this.byte(this.i))) this.i++;
    } else {
      return this.fail("invalid number", this.i);
    }
    const intEnd = this.i;
    let fracStart = -1;
    if (this.i < n && this.byte(this.i) == 0x2e) {
      this.i++;
      fracStart = this.i;
      while (this.i < n && isDigit(this.byte(this.i))) this.i++;
      if (this.i == fracStart) {
        if (this.i < n) return this.fail("invalid number", this.i + 1);
        return this.fail("EOF while parsing a value", this.i);
      }
    }
    const fracEnd = this.i;
    let expStart = -1;
    let expPositive = true;
    if (this.i < n && (this.byte(this.i) | 0x20) == 0x65) {
      this.i++;
      if (this.i < n && (this.byte(this.i) == 0x2b || this.byte(this.i) == 0x2d)) {
        expPositive = this.byte(this.i++) == 0x2b;
      }
      if (this.i >= n) return this.fail("EOF while parsing a value", this.i);
      expStart = this.i;
      if (!isDigit(this.byte(this.i++))) return this.fail("invalid number", this.i);
      while (this.i < n && isDigit(this.byte(this.i))) this.i++;
    }

    // The significand takes digits while it fits in a u64; integer digits past that raise the
    // exponent, fraction digits past that are dropped.
    let sig: u64 = 0;
    let k = intStart;
    for (; k < intEnd; k++) {
      const d = <u64>(this.byte(k) - 0x30);
      if (sig >= U64_MAX_DIV10 && (sig > U64_MAX_DIV10 || d > U64_MAX_MOD10)) break;
      sig = sig * 10 + d;
    }
    let exponent: i64 = intEnd - k;
    if (fracStart < 0 && expStart < 0) {
      if (k == intEnd) {
        if (positive) return JsonNumber.ofU64(sig);
        if (sig == 0) return JsonNumber.ofF64(-0.0); // `-0` is the float -0.0
        if (sig <= I64_MIN_MAGNITUDE) return JsonNumber.ofNegative(sig);
        return JsonNumber.ofF64(-<f64>sig);
      }
      return this.fromParts(positive, sig, exponent);
    }
    for (let f = fracStart; f >= 0 && f < fracEnd; f++) {
      const d = <u64>(this.byte(f) - 0x30);
      if (sig >= U64_MAX_DIV10 && (sig > U64_MAX_DIV10 || d > U64_MAX_MOD10)) break;
      sig = sig * 10 + d;
      exponent--;
    }
    if (expStart >= 0) {
      let exp: i64 = 0;
      for (let e = expStart; e < this.i; e++) {
        const d = this.byte(e) - 0x30;
        if (exp >= 214748364 && (exp > 214748364 || d > 7)) {
          // Past i32: out of range, or zero.
          if (sig != 0 && expPositive) return this.fail("number out of range", e + 1);
          return JsonNumber.ofF64(positive ? 0.0 : -0.0);
        }
        exp = exp * 10 + d;
      }
      exponent = max<i64>(i32.MIN_VALUE, min<i64>(i32.MAX_VALUE, exponent + (expPositive ? exp : -exp)));
    }
    return this.fromParts(positive, sig, exponent);
  }

  /** serde_json's `f64_from_parts`: sig × 10^exponent by f64 multiplications and divisions. */
  private fromParts(positive: bool, sig: u64, exponent: i64): JsonValue | null {
    let f = <f64>sig;
    for (;;) {
      const abs = exponent < 0 ? -exponent : exponent;
      if (abs <= 308) {
        if (exponent >= 0) {
          f *= POW10[<i32>abs];
          if (!isFinite(f)) return this.fail("number out of range", this.i);
        } else {
          f /= POW10[<i32>abs];
        }
        break;
      }
      if (f == 0) break;
      if (exponent >= 0) return this.fail("number out of range", this.i);
      f /= 1e308;
      exponent += 308;
    }
    return JsonNumber.ofF64(positive ? f : -f);
  }

  // The opening quote is read. A string without escapes or control characters that is valid
  // UTF-8 is not copied: the value points into the payload.
  private string(): JsonString | null {
    const start = this.i;
    let ascii = true;
    for (let k = start; k < this.n; k++) {
      const c = this.byte(k);
      if (c == 0x22) {
        const length = k - start;
        if (ascii || validUpTo(this.b + <usize>start, length) == length) {
          this.i = k + 1;
          return new JsonString(this.b + <usize>start, length, true);
        }
        break;
      }
      if (c == 0x5c || c < 0x20) break;
      if (c >= 0x80) ascii = false;
    }
    return this.decodeString();
  }

  /** A string with escapes (or an error), decoded into the arena. */
  private decodeString(): JsonString | null {
    // Decoding never makes a string longer, so its raw length (up to the closing quote, or the
    // end of the payload) is room enough.
    let end = this.i;
    while (end < this.n && this.byte(end) != 0x22) end += this.byte(end) == 0x5c ? 2 : 1;
    const out = arena.alloc(<usize>(min(end, this.n) - this.i));
    let length = 0;
    for (;;) {
      if (this.i >= this.n) return changetype<JsonString | null>(this.fail("EOF while parsing a string", this.n));
      const c = this.byte(this.i++);
      if (c == 0x22) break;
      if (c == 0x5c) {
        const code = this.escape();
        if (code < 0) return null;
        length += writeUtf8(out + <usize>length, code);
      } else if (c < 0x20) {
        return changetype<JsonString | null>(
          this.fail("control character (\\u0000-\\u001F) found while parsing a string", this.i),
        );
      } else {
        store<u8>(out + <usize>(length++), c);
      }
    }
    const valid = validUpTo(out, length);
    if (valid != length) {
      // serde_json points back from the closing quote to the first invalid byte.
      return changetype<JsonString | null>(this.fail("invalid unicode code point", this.i, length - valid));
    }
    return new JsonString(out, length, false);
  }

  /** After a backslash: the escaped code point, or -1 on an error. */
  private escape(): i32 {
    if (this.i >= this.n) {
      this.fail("EOF while parsing a string", this.n);
      return -1;
    }
    const c = this.byte(this.i++);
    switch (c) {
      case 0x22:
      case 0x5c:
      case 0x2f:
        return c;
      case 0x62:
        return 0x08;
      case 0x66:
        return 0x0c;
      case 0x6e:
        return 0x0a;
      case 0x72:
        return 0x0d;
      case 0x74:
        return 0x09;
      case 0x75:
        return this.unicodeEscape();
    }
    this.fail("invalid escape", this.i);
    return -1;
  }

  private unicodeEscape(): i32 {
    const lead = this.hex4();
    if (lead < 0) return -1;
    if (lead >= 0xdc00 && lead <= 0xdfff) {
      this.fail("lone leading surrogate in hex escape", this.i);
      return -1;
    }
    if (lead < 0xd800 || lead > 0xdbff) return lead;
    for (let k = 0; k < 2; k++) {
      if (this.i >= this.n) {
        this.fail("EOF while parsing a string", this.n);
        return -1;
      }
      if (this.byte(this.i++) != (k == 0 ? 0x5c : 0x75)) {
        this.fail("unexpected end of hex escape", this.i);
        return -1;
      }
    }
    const trail = this.hex4();
    if (trail < 0) return -1;
    if (trail < 0xdc00 || trail > 0xdfff) {
      this.fail("lone leading surrogate in hex escape", this.i);
      return -1;
    }
    return 0x10000 + ((lead - 0xd800) << 10) + (trail - 0xdc00);
  }

  private hex4(): i32 {
    if (this.n - this.i < 4) {
      this.fail("EOF while parsing a string", this.n);
      return -1;
    }
    let v = 0;
    let ok = true;
    for (let k = 0; k < 4; k++) {
      const c = this.byte(this.i + k);
      let d = 0;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else ok = false;
      v = v * 16 + d;
    }
    this.i += 4;
    if (!ok) {
      this.fail("invalid escape", this.i);
      return -1;
    }
    return v;
  }

  private array(): JsonValue | null {
    if (++this.depth >= RECURSION_LIMIT) return this.fail("recursion limit exceeded", this.i + 1);
    this.i++;
    const base = mark();
    let c = this.ws();
    if (c != 0x5d) {
      if (c == -1) return this.fail("EOF while parsing a list", this.i);
      for (;;) {
        const item = this.value();
        if (item == null) return null;
        push(item);
        c = this.ws();
        if (c != 0x2c) break;
        this.i++;
        c = this.ws();
        if (c == 0x5d) return this.fail("trailing comma", this.i + 1);
        if (c == -1) return this.fail("EOF while parsing a value", this.i);
      }
      if (c == -1) return this.fail("EOF while parsing a list", this.i);
      if (c != 0x5d) return this.fail("expected `,` or `]`", this.i + 1);
    }
    this.i++;
    this.depth--;
    return arrayFrom(base);
  }

  private object(): JsonValue | null {
    if (++this.depth >= RECURSION_LIMIT) return this.fail("recursion limit exceeded", this.i + 1);
    this.i++;
    const base = mark();
    let c = this.ws();
    if (c != 0x7d) {
      if (c == -1) return this.fail("EOF while parsing an object", this.i);
      for (;;) {
        if (c != 0x22) return this.fail("key must be a string", this.i + 1);
        this.i++;
        const key = this.string();
        if (key == null) return null;
        c = this.ws();
        if (c == -1) return this.fail("EOF while parsing an object", this.i);
        if (c != 0x3a) return this.fail("expected `:`", this.i + 1);
        this.i++;
        const value = this.value();
        if (value == null) return null;
        push(key);
        push(value);
        c = this.ws();
        if (c != 0x2c) break;
        this.i++;
        c = this.ws();
        if (c == 0x7d) return this.fail("trailing comma", this.i + 1);
        if (c == -1) return this.fail("EOF while parsing a value", this.i);
      }
      if (c == -1) return this.fail("EOF while parsing an object", this.i);
      if (c != 0x7d) return this.fail("expected `,` or `}`", this.i + 1);
    }
    this.i++;
    this.depth--;
    return objectFrom(base);
  }
}

/** Write the code point `code` (never a surrogate) as UTF-8 at `at`; returns the byte count. */
function writeUtf8(at: usize, code: i32): i32 {
  if (code < 0x80) {
    store<u8>(at, code);
    return 1;
  }
  if (code < 0x800) {
    store<u8>(at, 0xc0 | (code >> 6));
    store<u8>(at, 0x80 | (code & 0x3f), 1);
    return 2;
  }
  if (code < 0x10000) {
    store<u8>(at, 0xe0 | (code >> 12));
    store<u8>(at, 0x80 | ((code >> 6) & 0x3f), 1);
    store<u8>(at, 0x80 | (code & 0x3f), 2);
    return 3;
  }
  store<u8>(at, 0xf0 | (code >> 18));
  store<u8>(at, 0x80 | ((code >> 12) & 0x3f), 1);
  store<u8>(at, 0x80 | ((code >> 6) & 0x3f), 2);
  store<u8>(at, 0x80 | (code & 0x3f), 3);
  return 4;
}

/** Length of the longest valid UTF-8 prefix (Rust's `Utf8Error::valid_up_to`). */
function validUpTo(b: usize, n: i32): i32 {
  let k = 0;
  while (k < n) {
    const c = <i32>load<u8>(b + <usize>k);
    let len = 1;
    let lo = 0x80;
    let hi = 0xbf;
    if (c < 0x80) len = 1;
    else if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else return k;
    for (let j = 1; j < len; j++) {
      if (k + j >= n) return k;
      const d = <i32>load<u8>(b + <usize>(k + j));
      if (j == 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return k;
    }
    k += len;
  }
  return k;
}
