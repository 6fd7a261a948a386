// js-enrich: the `json-enrich` handler (plugins/json-enrich/src/lib.rs) written in JavaScript.
//
// Validates the event envelope our users send, enriches it and routes it by type. Envelope:
// `event_type`, `event_id`, `timestamp`, `version`, `data` (object) and `metadata` (`producer`,
// optional `trace_id`, `correlation_id`). A payload that is not such an envelope is rejected as
// `invalid` with the reason. Valid events get `processed_at` (the host's receive time, ms since
// the Unix epoch) and `processed_by`, an `event-type` header, and a route chosen by the part of
// `event_type` before the first dot, from `init` settings `route.<prefix>: <sink>`.
//
// Outputs and error texts are byte for byte the Rust handler's: serde_json (without
// `preserve_order` or `float_roundtrip`) sorts object keys, keeps integers and floats apart
// (`1.0` stays `1.0`, integers up to u64 stay exact), converts and formats floats its own way and
// words syntax errors as `<what> at line L column C`. So this file carries a small JSON reader
// and writer with the same rules instead of JSON.parse/JSON.stringify.
//
// Built with componentize-js against plugins/js-enrich/wit (world `enrich`): see
// scripts/build-handlers.sh.

import { log } from 'sluice:plugin/log@0.1.0';

/** Written into every enriched event, the same value as the Rust handler's. */
const PROCESSED_BY = 'sluice/json-enrich';

/** `[event type prefix, sink]` pairs from `init`; `null` until `init` has run. */
let routes = null;

/**
 * Thrown to return an `err`: componentize-js lowers a thrown value's own `payload` property as
 * the error of a `result`.
 */
class Failure {
  constructor(payload) {
    this.payload = payload;
  }
}

const invalid = (reason) => new Failure({ tag: 'invalid', val: reason });

/**
 * Wraps an exported interface's functions so that an exception escaping one (a bug, not a
 * `Failure`) is logged as `panic: …` before it goes on: componentize-js then traps, and the host
 * puts that line in the dead-letter reason, as it does a Rust panic's message.
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

export const lifecycle = logCrashes({
  init(config) {
    const parsed = [];
    for (const [key, value] of config) {
      const prefix = key.startsWith('route.') ? key.slice('route.'.length) : '';
      if (prefix === '' || value === '') {
        throw new Failure(
          `unknown setting \`${key}\` (expected \`route.<event type prefix>: <sink>\`)`,
        );
      }
      parsed.push([prefix, value]);
    }
    if (routes !== null) throw new Failure('init called twice');
    routes = parsed;
  },
});

export const messageHandler = logCrashes({
  handle(msg) {
    return enrich(msg);
  },

  handleBatch(msgs) {
    return msgs.map((msg) => {
      try {
        return { tag: 'ok', val: enrich(msg) };
      } catch (e) {
        if (e instanceof Failure) return { tag: 'err', val: e.payload };
        throw e;
      }
    });
  },
});

function enrich(msg) {
  const event = parseJson(msg.payload);
  if (!(event instanceof Map)) throw invalid('envelope must be a JSON object');
  const eventType = stringField(event, 'event_type');
  stringField(event, 'event_id');
  stringField(event, 'version');
  const timestamp = field(event, 'timestamp');
  if (!isNumber(timestamp) && typeof timestamp !== 'string') {
    throw invalid('envelope field `timestamp` must be a number or a string');
  }
  if (!(field(event, 'data') instanceof Map)) {
    throw invalid('envelope field `data` must be an object');
  }
  const metadata = field(event, 'metadata');
  if (!(metadata instanceof Map)) throw invalid('envelope field `metadata` must be an object');
  const producer = metadata.get('producer');
  if (typeof producer !== 'string' || producer === '') {
    throw invalid('envelope field `metadata.producer` must be a non-empty string');
  }
  for (const optional of ['trace_id', 'correlation_id']) {
    if (metadata.has(optional) && typeof metadata.get(optional) !== 'string') {
      throw invalid(`envelope field \`metadata.${optional}\` must be a string`);
    }
  }

  event.set('processed_at', BigInt(msg.metadata.receivedMs));
  event.set('processed_by', PROCESSED_BY);
  const prefix = eventType.split('.', 1)[0];
  const found = routes === null ? undefined : routes.find(([p]) => p === prefix);
  return [
    {
      payload: encoder.encode(writeJson(event)),
      key: msg.key,
      headers: [...msg.headers, ['event-type', eventType]],
      route: found === undefined ? undefined : found[1],
    },
  ];
}

function field(obj, name) {
  if (!obj.has(name)) throw invalid(`envelope is missing \`${name}\``);
  return obj.get(name);
}

function stringField(obj, name) {
  const value = field(obj, name);
  if (typeof value !== 'string' || value === '') {
    throw invalid(`envelope field \`${name}\` must be a non-empty string`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// JSON with serde_json's rules. Values: null, booleans, strings, integers as BigInt (i64/u64
// range, like serde_json), other numbers as Number (f64), arrays, objects as Map.

const isNumber = (v) => typeof v === 'bigint' || typeof v === 'number';

const encoder = new TextEncoder();
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const U64_MAX = 18446744073709551615n;
const U64_MAX_DIV10 = U64_MAX / 10n;
const U64_MAX_MOD10 = U64_MAX % 10n;
const I64_MIN_ABS = 9223372036854775808n;
/** 1e0 ..= 1e308, serde_json's `POW10`. */
const POW10 = Array.from({ length: 309 }, (_, k) => Number(`1e${k}`));
/** serde_json refuses the 128th level of nested arrays/objects. */
const RECURSION_LIMIT = 128;
const NEEDS_SLOW_STRING = /[\\\u0000-\u001f]/;

/** A JSON syntax error: serde_json's text, the byte index it is reported at, and how many bytes
 * the column is moved back (for invalid UTF-8, which serde_json finds at the closing quote). */
class SyntaxFailure {
  constructor(code, at, back = 0) {
    this.code = code;
    this.at = at;
    this.back = back;
  }
}

/** Parse a payload as serde_json's `from_slice` does; a failure is `invalid`, with its text. */
function parseJson(b) {
  const n = b.length;
  let i = 0;
  let depth = 0;

  // `at` is the byte index serde_json reports the error at (its `error` uses the bytes read so
  // far, its `peek_error` one more).
  const fail = (code, at) => {
    throw new SyntaxFailure(code, Math.min(at, n));
  };
  const isDigit = (c) => c >= 0x30 && c <= 0x39;

  function ws() {
    while (i < n) {
      const c = b[i];
      if (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d) i++;
      else return c;
    }
    return -1;
  }

  function value() {
    const c = ws();
    switch (c) {
      case -1:
        return fail('EOF while parsing a value', i);
      case 0x6e:
        i++;
        ident('ull');
        return null;
      case 0x74:
        i++;
        ident('rue');
        return true;
      case 0x66:
        i++;
        ident('alse');
        return false;
      case 0x2d:
        i++;
        return number(false);
      case 0x22:
        i++;
        return string();
      case 0x5b:
        return array();
      case 0x7b:
        return object();
      default:
        if (isDigit(c)) return number(true);
        return fail('expected value', i + 1);
    }
  }

  function ident(rest) {
    for (let k = 0; k < rest.length; k++) {
      if (i >= n) fail('EOF while parsing a value', i);
      if (b[i++] !== rest.charCodeAt(k)) fail('expected ident', i);
    }
  }

  // A number, read as serde_json reads one (without its `float_roundtrip` feature, so floats
  // come out exactly as its own, not always correctly rounded, conversion makes them).
  function number(positive) {
    if (i >= n) fail('EOF while parsing a value', i);
    const intStart = i;
    const first = b[i++];
    if (first === 0x30) {
      if (i < n && isDigit(b[i])) fail('invalid number', i + 1);
    } else if (isDigit(first)) {
      while (i < n && isDigit(b[i])) i++;
    } else {
      fail('invalid number', i);
    }
    const intEnd = i;
    let fracStart = -1;
    if (i < n && b[i] === 0x2e) {
      i++;
      fracStart = i;
      while (i < n && isDigit(b[i])) i++;
      if (i === fracStart) {
        if (i < n) fail('invalid number', i + 1);
        fail('EOF while parsing a value', i);
      }
    }
    const fracEnd = i;
    let expStart = -1;
    let expPositive = true;
    if (i < n && (b[i] === 0x65 || b[i] === 0x45)) {
      i++;
      if (i < n && (b[i] === 0x2b || b[i] === 0x2d)) expPositive = b[i++] === 0x2b;
      if (i >= n) fail('EOF while parsing a value', i);
      expStart = i;
      if (!isDigit(b[i++])) fail('invalid number', i);
      while (i < n && isDigit(b[i])) i++;
    }

    // The significand takes digits while it fits in a u64; integer digits past that raise the
    // exponent, fraction digits past that are dropped.
    let sig = intEnd - intStart <= 19 ? BigInt(ascii(intStart, intEnd)) : U64_MAX + 1n;
    let k = intEnd;
    if (sig > U64_MAX) {
      sig = 0n;
      for (k = intStart; k < intEnd; k++) {
        const d = BigInt(b[k] - 0x30);
        if (sig >= U64_MAX_DIV10 && (sig > U64_MAX_DIV10 || d > U64_MAX_MOD10)) break;
        sig = sig * 10n + d;
      }
    }
    let exponent = intEnd - k;
    if (fracStart < 0 && expStart < 0) {
      if (k === intEnd) {
        if (positive) return sig;
        if (sig === 0n) return -0; // `-0` is the float -0.0
        if (sig <= I64_MIN_ABS) return -sig;
        return -Number(sig);
      }
      return fromParts(positive, sig, exponent);
    }
    for (let f = fracStart; f >= 0 && f < fracEnd; f++) {
      const d = BigInt(b[f] - 0x30);
      if (sig >= U64_MAX_DIV10 && (sig > U64_MAX_DIV10 || d > U64_MAX_MOD10)) break;
      sig = sig * 10n + d;
      exponent--;
    }
    if (expStart >= 0) {
      let exp = 0;
      for (let e = expStart; e < i; e++) {
        const d = b[e] - 0x30;
        if (exp >= 214748364 && (exp > 214748364 || d > 7)) {
          // Past i32: out of range, or zero.
          if (sig !== 0n && expPositive) fail('number out of range', e + 1);
          return positive ? 0 : -0;
        }
        exp = exp * 10 + d;
      }
      exponent = Math.max(-2147483648, Math.min(2147483647, exponent + (expPositive ? exp : -exp)));
    }
    return fromParts(positive, sig, exponent);
  }

  // serde_json's `f64_from_parts`: sig × 10^exponent by f64 multiplications and divisions.
  function fromParts(positive, sig, exponent) {
    let f = Number(sig);
    for (;;) {
      const abs = Math.abs(exponent);
      if (abs <= 308) {
        if (exponent >= 0) {
          f *= POW10[abs];
          if (!Number.isFinite(f)) fail('number out of range', i);
        } else {
          f /= POW10[abs];
        }
        break;
      }
      if (f === 0) break;
      if (exponent >= 0) fail('number out of range', i);
      f /= 1e308;
      exponent += 308;
    }
    return positive ? f : -f;
  }

  const ascii = (from, to) => String.fromCharCode.apply(null, b.subarray(from, to));

  // The opening quote is read.
  function string() {
    const close = b.indexOf(0x22, i);
    if (close >= 0) {
      // Fast path: no escape, no control character, valid UTF-8.
      let s = null;
      try {
        s = utf8.decode(b.subarray(i, close));
      } catch {
        s = null;
      }
      if (s !== null && !NEEDS_SLOW_STRING.test(s)) {
        i = close + 1;
        return s;
      }
    }
    return slowString();
  }

  function slowString() {
    const bytes = [];
    for (;;) {
      if (i >= n) fail('EOF while parsing a string', n);
      const c = b[i++];
      if (c === 0x22) break;
      if (c === 0x5c) {
        escape(bytes);
      } else if (c < 0x20) {
        fail('control character (\\u0000-\\u001F) found while parsing a string', i);
      } else {
        bytes.push(c);
      }
    }
    const raw = Uint8Array.from(bytes);
    try {
      return utf8.decode(raw);
    } catch {
      // serde_json points back from the closing quote to the first invalid byte.
      throw new SyntaxFailure('invalid unicode code point', i, raw.length - validUpTo(raw));
    }
  }

  function escape(bytes) {
    if (i >= n) fail('EOF while parsing a string', n);
    const c = b[i++];
    let code;
    switch (c) {
      case 0x22:
      case 0x5c:
      case 0x2f:
        code = c;
        break;
      case 0x62:
        code = 0x08;
        break;
      case 0x66:
        code = 0x0c;
        break;
      case 0x6e:
        code = 0x0a;
        break;
      case 0x72:
        code = 0x0d;
        break;
      case 0x74:
        code = 0x09;
        break;
      case 0x75:
        code = unicodeEscape();
        break;
      default:
        fail('invalid escape', i);
    }
    pushUtf8(bytes, code);
  }

  function unicodeEscape() {
    const lead = hex4();
    if (lead >= 0xdc00 && lead <= 0xdfff) fail('lone leading surrogate in hex escape', i);
    if (lead < 0xd800 || lead > 0xdbff) return lead;
    for (const expected of [0x5c, 0x75]) {
      if (i >= n) fail('EOF while parsing a string', n);
      if (b[i++] !== expected) fail('unexpected end of hex escape', i);
    }
    const trail = hex4();
    if (trail < 0xdc00 || trail > 0xdfff) fail('lone leading surrogate in hex escape', i);
    return 0x10000 + ((lead - 0xd800) << 10) + (trail - 0xdc00);
  }

  function hex4() {
    if (n - i < 4) fail('EOF while parsing a string', n);
    let v = 0;
    let ok = true;
    for (let k = 0; k < 4; k++) {
      const c = b[i + k];
      let d;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else ok = false;
      v = v * 16 + d;
    }
    i += 4;
    if (!ok) fail('invalid escape', i);
    return v;
  }

  function array() {
    if (++depth >= RECURSION_LIMIT) fail('recursion limit exceeded', i + 1);
    i++;
    const items = [];
    let c = ws();
    if (c === 0x5d) {
      i++;
      depth--;
      return items;
    }
    if (c === -1) fail('EOF while parsing a list', i);
    for (;;) {
      items.push(value());
      c = ws();
      if (c === 0x5d) {
        i++;
        depth--;
        return items;
      }
      if (c === 0x2c) {
        i++;
        c = ws();
        if (c === 0x5d) fail('trailing comma', i + 1);
        if (c === -1) fail('EOF while parsing a value', i);
      } else if (c === -1) {
        fail('EOF while parsing a list', i);
      } else {
        fail('expected `,` or `]`', i + 1);
      }
    }
  }

  function object() {
    if (++depth >= RECURSION_LIMIT) fail('recursion limit exceeded', i + 1);
    i++;
    const obj = new Map();
    let c = ws();
    if (c === 0x7d) {
      i++;
      depth--;
      return obj;
    }
    if (c === -1) fail('EOF while parsing an object', i);
    for (;;) {
      if (c !== 0x22) fail('key must be a string', i + 1);
      i++;
      const key = string();
      c = ws();
      if (c === 0x3a) i++;
      else if (c === -1) fail('EOF while parsing an object', i);
      else fail('expected `:`', i + 1);
      obj.set(key, value());
      c = ws();
      if (c === 0x7d) {
        i++;
        depth--;
        return obj;
      }
      if (c === 0x2c) {
        i++;
        c = ws();
        if (c === 0x7d) fail('trailing comma', i + 1);
        if (c === -1) fail('EOF while parsing a value', i);
      } else if (c === -1) {
        fail('EOF while parsing an object', i);
      } else {
        fail('expected `,` or `}`', i + 1);
      }
    }
  }

  try {
    const v = value();
    if (ws() !== -1) fail('trailing characters', i + 1);
    return v;
  } catch (e) {
    if (!(e instanceof SyntaxFailure)) throw e;
    throw invalid(`payload is not valid JSON: ${describe(b, e)}`);
  }
}

/** `<code> at line L column C`, the position counted as serde_json counts it (in bytes). */
function describe(b, e) {
  const at = e.at;
  let lineStart = at > 0 ? b.lastIndexOf(0x0a, at - 1) + 1 : 0;
  let line = 1;
  for (let k = b.indexOf(0x0a); k >= 0 && k < lineStart; k = b.indexOf(0x0a, k + 1)) line++;
  const column = Math.max(0, at - lineStart - e.back);
  return `${e.code} at line ${line} column ${column}`;
}

function pushUtf8(bytes, code) {
  if (code < 0x80) {
    bytes.push(code);
  } else if (code < 0x800) {
    bytes.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
  } else if (code < 0x10000) {
    bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
  } else {
    bytes.push(
      0xf0 | (code >> 18),
      0x80 | ((code >> 12) & 0x3f),
      0x80 | ((code >> 6) & 0x3f),
      0x80 | (code & 0x3f),
    );
  }
}

/** Length of the longest valid UTF-8 prefix of `b` (Rust's `Utf8Error::valid_up_to`). */
function validUpTo(b) {
  let k = 0;
  while (k < b.length) {
    const c = b[k];
    let len;
    let lo = 0x80;
    let hi = 0xbf;
    if (c < 0x80) len = 1;
    else if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return k;
    for (let j = 1; j < len; j++) {
      const d = b[k + j];
      if (d === undefined) return k;
      if (j === 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return k;
    }
    k += len;
  }
  return k;
}

/** Compact JSON, object keys sorted by code point: what serde_json writes for a `Value`. */
function writeJson(v) {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'bigint':
      return v.toString();
    case 'number':
      return formatFloat(v);
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      if (v === null) return 'null';
      if (Array.isArray(v)) return `[${v.map(writeJson).join(',')}]`;
      return `{${[...v.keys()]
        .sort(byCodePoint)
        .map((k) => `${JSON.stringify(k)}:${writeJson(v.get(k))}`)
        .join(',')}}`;
  }
}

/** Order strings as Rust does (by UTF-8 bytes = by code point), not by UTF-16 unit. */
function byCodePoint(a, b) {
  const n = Math.min(a.length, b.length);
  for (let k = 0; k < n; k++) {
    let x = a.charCodeAt(k);
    let y = b.charCodeAt(k);
    if (x !== y) {
      // Surrogates (code points above U+FFFF) sort after U+E000..U+FFFF.
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/**
 * A finite f64 as serde_json writes it (the `zmij` crate): the shortest digits that read back
 * to the same number; plain notation for decimal exponents -5..=15 with at least one digit after
 * the point (`100.0`, `0.00001`), otherwise `1.5e-7` / `1e+16`.
 */
function formatFloat(f) {
  if (f === 0) return Object.is(f, -0) ? '-0.0' : '0.0';
  let s = String(f);
  const negative = s.startsWith('-');
  if (negative) s = s.slice(1);
  const e = s.indexOf('e');
  const exp = e >= 0 ? Number(s.slice(e + 1)) : 0;
  const mantissa = e >= 0 ? s.slice(0, e) : s;
  const dot = mantissa.indexOf('.');
  const intPart = dot >= 0 ? mantissa.slice(0, dot) : mantissa;
  let digits = intPart + (dot >= 0 ? mantissa.slice(dot + 1) : '');
  let point = intPart.length + exp;
  const trimmed = digits.replace(/^0+/, '');
  point -= digits.length - trimmed.length;
  digits = trimmed.replace(/0+$/, '');
  const decExp = point - 1;
  const len = digits.length;
  let out;
  if (decExp >= -5 && decExp <= 15) {
    if (len - 1 <= decExp) out = `${digits}${'0'.repeat(decExp - len + 1)}.0`;
    else if (decExp >= 0) out = `${digits.slice(0, decExp + 1)}.${digits.slice(decExp + 1)}`;
    else out = `0.${'0'.repeat(-decExp - 1)}${digits}`;
  } else {
    const frac = len > 1 ? `.${digits.slice(1)}` : '';
    out = `${digits[0]}${frac}e${decExp < 0 ? '-' : '+'}${Math.abs(decExp)}`;
  }
  return negative ? `-${out}` : out;
}
