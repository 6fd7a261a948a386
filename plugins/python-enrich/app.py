"""python-enrich: the `json-enrich` handler (plugins/json-enrich/src/lib.rs) written in Python.

Validates the event envelope our users send, enriches it and routes it by type. Envelope:
`event_type`, `event_id`, `timestamp`, `version`, `data` (object) and `metadata` (`producer`,
optional `trace_id`, `correlation_id`). A payload that is not such an envelope is rejected as
`invalid` with the reason. Valid events get `processed_at` (the host's receive time, ms since the
Unix epoch) and `processed_by`, an `event-type` header, and a route chosen by the part of
`event_type` before the first dot, from `init` settings `route.<prefix>: <sink>`.

The output is byte for byte what the Rust handler writes. serde_json (without `preserve_order`)
sorts object keys, keeps integers and floats apart, keeps integers only in the i64/u64 range and
formats floats its own way; it refuses what Python's `json` lets through (NaN, lone surrogates,
nesting past 127 levels). So `json.loads` reads the payload with hooks and checks for those
rules, a small writer writes it, and a payload `json.loads` or the checks refuse is read again
by `_SyntaxScan`, a port of serde_json's reader, only to word the error as serde_json does.

Built with componentize-py against plugins/python-enrich/wit (world `enrich`): see
scripts/build-handlers.sh.
"""

import json
import math
import re
from typing import List, Optional, Tuple

from componentize_py_types import Err, Ok, Result
from wit_world import exports
from wit_world.imports.types import HandlerError, HandlerError_Invalid, Message, Output

import sluice_crash

# Written into every enriched event, the same value as the Rust handler's.
PROCESSED_BY = "sluice/json-enrich"

# (event type prefix, sink) pairs from `init`; None until `init` has run.
_routes: Optional[List[Tuple[str, str]]] = None


sluice_crash.install()  # an uncaught exception's message goes to the dead-letter reason


class Lifecycle(exports.Lifecycle):
    def init(self, config: List[Tuple[str, str]]) -> None:
        global _routes
        routes = []
        for key, value in config:
            prefix = key[len("route.") :] if key.startswith("route.") else ""
            if not prefix or not value:
                raise Err(
                    f"unknown setting `{key}` (expected `route.<event type prefix>: <sink>`)"
                )
            routes.append((prefix, value))
        if _routes is not None:
            raise Err("init called twice")
        _routes = routes


class MessageHandler(exports.MessageHandler):
    def handle(self, msg: Message) -> List[Output]:
        return _enrich(msg)

    def handle_batch(self, msgs: List[Message]) -> List[Result[List[Output], HandlerError]]:
        results: List[Result[List[Output], HandlerError]] = []
        for msg in msgs:
            try:
                results.append(Ok(_enrich(msg)))
            except Err as e:
                results.append(e)
        return results


def _invalid(reason: str) -> Err:
    return Err(HandlerError_Invalid(reason))


def _enrich(msg: Message) -> List[Output]:
    event = _parse(msg.payload)
    if not isinstance(event, dict):
        raise _invalid("envelope must be a JSON object")
    event_type = _string_field(event, "event_type")
    _string_field(event, "event_id")
    _string_field(event, "version")
    timestamp = _field(event, "timestamp")
    if not (_is_number(timestamp) or isinstance(timestamp, str)):
        raise _invalid("envelope field `timestamp` must be a number or a string")
    if not isinstance(_field(event, "data"), dict):
        raise _invalid("envelope field `data` must be an object")
    metadata = _field(event, "metadata")
    if not isinstance(metadata, dict):
        raise _invalid("envelope field `metadata` must be an object")
    producer = metadata.get("producer")
    if not isinstance(producer, str) or not producer:
        raise _invalid("envelope field `metadata.producer` must be a non-empty string")
    for optional in ("trace_id", "correlation_id"):
        if optional in metadata and not isinstance(metadata[optional], str):
            raise _invalid(f"envelope field `metadata.{optional}` must be a string")

    event["processed_at"] = msg.metadata.received_ms
    event["processed_by"] = PROCESSED_BY
    prefix = event_type.split(".", 1)[0]
    route = next((sink for p, sink in (_routes or ()) if p == prefix), None)
    return [
        Output(
            payload=_dump(event).encode("utf-8"),
            key=msg.key,
            headers=list(msg.headers) + [("event-type", event_type)],
            route=route,
        )
    ]


def _field(obj: dict, name: str):
    if name not in obj:
        raise _invalid(f"envelope is missing `{name}`")
    return obj[name]


def _string_field(obj: dict, name: str) -> str:
    value = _field(obj, name)
    if not isinstance(value, str) or not value:
        raise _invalid(f"envelope field `{name}` must be a non-empty string")
    return value


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# Reading JSON with serde_json's rules.

_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)
# serde_json refuses the 128th level of nested arrays/objects.
_RECURSION_LIMIT = 128
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class _Refused(Exception):
    """A payload `json.loads` accepts but serde_json does not. `at`: where in a number literal
    serde_json reports it (None: at its end)."""

    def __init__(self, code: str, at: Optional[int] = None):
        super().__init__(code)
        self.at = at


_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?)(\d+))?")
_U64_MAX_DIV10, _U64_MAX_MOD10 = divmod(_U64_MAX, 10)
# 1e0 ..= 1e308, serde_json's `POW10`.
_POW10 = [float(f"1e{k}") for k in range(309)]


def _number(text: str):
    """A number literal as serde_json reads it (without its `float_roundtrip` feature, so floats
    come out exactly as its own, not always correctly rounded, conversion makes them)."""
    if len(text) <= 18 and (text.isdigit() or (text[0] == "-" and text[1:].isdigit() and text != "-0")):
        return int(text)  # fits in an i64 whatever the digits
    negative, int_digits, frac_digits, exp_sign, exp_digits = _NUMBER.fullmatch(text).groups()
    positive = not negative
    # The significand takes digits while it fits in a u64; integer digits past that raise the
    # exponent, fraction digits past that are dropped.
    sig = int(int_digits) if len(int_digits) <= 20 else _U64_MAX + 1
    taken = len(int_digits)
    if sig > _U64_MAX:
        sig = taken = 0
        for c in int_digits:
            d = ord(c) - 0x30
            if sig >= _U64_MAX_DIV10 and (sig > _U64_MAX_DIV10 or d > _U64_MAX_MOD10):
                break
            sig = sig * 10 + d
            taken += 1
    exponent = len(int_digits) - taken
    if frac_digits is None and exp_digits is None:
        if taken == len(int_digits):
            if positive:
                return sig
            if sig == 0:
                return -0.0  # `-0` is the float -0.0
            if sig <= -_I64_MIN:
                return -sig
            return -float(sig)
        return _from_parts(positive, sig, exponent)
    for c in frac_digits or "":
        d = ord(c) - 0x30
        if sig >= _U64_MAX_DIV10 and (sig > _U64_MAX_DIV10 or d > _U64_MAX_MOD10):
            break
        sig = sig * 10 + d
        exponent -= 1
    if exp_digits is not None:
        exp_positive = exp_sign != "-"
        exp = 0
        for k, c in enumerate(exp_digits):
            d = ord(c) - 0x30
            if exp >= 214748364 and (exp > 214748364 or d > 7):
                # Past i32: out of range, or zero.
                if sig != 0 and exp_positive:
                    raise _Refused("number out of range", len(text) - len(exp_digits) + k + 1)
                return 0.0 if positive else -0.0
            exp = exp * 10 + d
        exponent = max(-(1 << 31), min((1 << 31) - 1, exponent + (exp if exp_positive else -exp)))
    return _from_parts(positive, sig, exponent)


def _from_parts(positive: bool, sig: int, exponent: int) -> float:
    """serde_json's `f64_from_parts`: sig × 10^exponent by f64 multiplications and divisions."""
    f = float(sig)
    while True:
        if abs(exponent) <= 308:
            if exponent >= 0:
                f *= _POW10[abs(exponent)]
                if math.isinf(f):
                    raise _Refused("number out of range")
            else:
                f /= _POW10[abs(exponent)]
            break
        if f == 0.0:
            break
        if exponent >= 0:
            raise _Refused("number out of range")
        f /= 1e308
        exponent += 308
    return f if positive else -f


def _parse_constant(text: str):
    raise _Refused("expected value")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") < _RECURSION_LIMIT:
        return False
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            if depth >= _RECURSION_LIMIT:
                return True
        else:
            depth -= 1
    return False


def _has_surrogate(v) -> bool:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(v, list):
        return any(_has_surrogate(x) for x in v)
    if isinstance(v, dict):
        return any(_has_surrogate(k) or _has_surrogate(x) for k, x in v.items())
    return False


def _parse(payload: bytes):
    """Parse a payload as serde_json's `from_slice` does; a failure is `invalid`, with its text."""
    try:
        text = payload.decode("utf-8")
        if _too_deep(text):
            raise _Refused("recursion limit exceeded")
        value = json.loads(
            text,
            parse_int=_number,
            parse_float=_number,
            parse_constant=_parse_constant,
        )
        if "\\u" in text and _has_surrogate(value):
            raise _Refused("lone surrogate")
        return value
    except (ValueError, RecursionError, _Refused) as e:
        reason = _SyntaxScan(payload).error() or str(e)
        raise _invalid(f"payload is not valid JSON: {reason}") from None


class _SyntaxError(Exception):
    def __init__(self, code: str, at: int, back: int = 0):
        super().__init__(code)
        self.code, self.at, self.back = code, at, back


class _SyntaxScan:
    """serde_json's reader, only to find and word the first error in a refused payload.

    Positions are counted as serde_json counts them: in bytes, at the bytes read so far (its
    `error`) or one more (its `peek_error`).
    """

    def __init__(self, b: bytes):
        self.b, self.n, self.i, self.depth = b, len(b), 0, 0

    def error(self) -> Optional[str]:
        try:
            self.value()
            if self.ws() != -1:
                self.fail("trailing characters", self.i + 1)
        except _SyntaxError as e:
            b = self.b
            line_start = b.rfind(b"\n", 0, e.at) + 1
            line = 1 + b.count(b"\n", 0, line_start)
            column = max(0, e.at - line_start - e.back)
            return f"{e.code} at line {line} column {column}"
        except RecursionError:
            return "recursion limit exceeded"
        return None

    def fail(self, code: str, at: int, back: int = 0):
        raise _SyntaxError(code, min(at, self.n), back)

    def ws(self) -> int:
        b, n = self.b, self.n
        while self.i < n:
            c = b[self.i]
            if c in b" \n\t\r":
                self.i += 1
            else:
                return c
        return -1

    def value(self) -> None:
        c = self.ws()
        if c == -1:
            self.fail("EOF while parsing a value", self.i)
        elif c in b"ntf":
            self.i += 1
            self.ident({0x6E: b"ull", 0x74: b"rue", 0x66: b"alse"}[c])
        elif c == 0x2D:
            self.i += 1
            self.number(False)
        elif 0x30 <= c <= 0x39:
            self.number(True)
        elif c == 0x22:
            self.i += 1
            self.string()
        elif c == 0x5B:
            self.array()
        elif c == 0x7B:
            self.object()
        else:
            self.fail("expected value", self.i + 1)

    def ident(self, rest: bytes) -> None:
        for expected in rest:
            if self.i >= self.n:
                self.fail("EOF while parsing a value", self.i)
            self.i += 1
            if self.b[self.i - 1] != expected:
                self.fail("expected ident", self.i)

    def digit(self) -> bool:
        return self.i < self.n and 0x30 <= self.b[self.i] <= 0x39

    def number(self, positive: bool) -> None:
        start = self.i if positive else self.i - 1
        if self.i >= self.n:
            self.fail("EOF while parsing a value", self.i)
        first = self.b[self.i]
        self.i += 1
        if first == 0x30:
            if self.digit():
                self.fail("invalid number", self.i + 1)
        elif 0x31 <= first <= 0x39:
            while self.digit():
                self.i += 1
        else:
            self.fail("invalid number", self.i)
        if self.i < self.n and self.b[self.i] == 0x2E:
            self.i += 1
            digits = self.i
            while self.digit():
                self.i += 1
            if self.i == digits:
                if self.i < self.n:
                    self.fail("invalid number", self.i + 1)
                self.fail("EOF while parsing a value", self.i)
        if self.i < self.n and self.b[self.i] in b"eE":
            self.i += 1
            if self.i < self.n and self.b[self.i] in b"+-":
                self.i += 1
            if self.i >= self.n:
                self.fail("EOF while parsing a value", self.i)
            self.i += 1
            if not 0x30 <= self.b[self.i - 1] <= 0x39:
                self.fail("invalid number", self.i)
            while self.digit():
                self.i += 1
        try:
            _number(self.b[start : self.i].decode("ascii"))
        except _Refused as e:
            self.fail(str(e), self.i if e.at is None else start + e.at)

    def string(self) -> None:
        b, n = self.b, self.n
        out = bytearray()
        while True:
            if self.i >= n:
                self.fail("EOF while parsing a string", n)
            c = b[self.i]
            self.i += 1
            if c == 0x22:
                break
            if c == 0x5C:
                self.escape(out)
            elif c < 0x20:
                self.fail(
                    "control character (\\u0000-\\u001F) found while parsing a string", self.i
                )
            else:
                out.append(c)
        try:
            out.decode("utf-8")
        except UnicodeDecodeError as e:
            # serde_json points back from the closing quote to the first invalid byte.
            self.fail("invalid unicode code point", self.i, len(out) - e.start)

    def escape(self, out: bytearray) -> None:
        if self.i >= self.n:
            self.fail("EOF while parsing a string", self.n)
        c = self.b[self.i]
        self.i += 1
        simple = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 8, 0x66: 12, 0x6E: 10, 0x72: 13, 0x74: 9}
        if c in simple:
            out.append(simple[c])
        elif c == 0x75:
            out += chr(self.unicode_escape()).encode("utf-8")
        else:
            self.fail("invalid escape", self.i)

    def unicode_escape(self) -> int:
        lead = self.hex4()
        if 0xDC00 <= lead <= 0xDFFF:
            self.fail("lone leading surrogate in hex escape", self.i)
        if not 0xD800 <= lead <= 0xDBFF:
            return lead
        for expected in b"\\u":
            if self.i >= self.n:
                self.fail("EOF while parsing a string", self.n)
            self.i += 1
            if self.b[self.i - 1] != expected:
                self.fail("unexpected end of hex escape", self.i)
        trail = self.hex4()
        if not 0xDC00 <= trail <= 0xDFFF:
            self.fail("lone leading surrogate in hex escape", self.i)
        return 0x10000 + ((lead - 0xD800) << 10) + (trail - 0xDC00)

    def hex4(self) -> int:
        if self.n - self.i < 4:
            self.fail("EOF while parsing a string", self.n)
        digits = self.b[self.i : self.i + 4]
        self.i += 4
        if any(d not in b"0123456789abcdefABCDEF" for d in digits):
            self.fail("invalid escape", self.i)
        return int(digits, 16)

    def array(self) -> None:
        self.enter()
        c = self.ws()
        if c == 0x5D:
            self.i += 1
            self.depth -= 1
            return
        if c == -1:
            self.fail("EOF while parsing a list", self.i)
        while True:
            self.value()
            c = self.ws()
            if c == 0x5D:
                self.i += 1
                self.depth -= 1
                return
            if c == 0x2C:
                self.i += 1
                c = self.ws()
                if c == 0x5D:
                    self.fail("trailing comma", self.i + 1)
                if c == -1:
                    self.fail("EOF while parsing a value", self.i)
            elif c == -1:
                self.fail("EOF while parsing a list", self.i)
            else:
                self.fail("expected `,` or `]`", self.i + 1)

    def object(self) -> None:
        self.enter()
        c = self.ws()
        if c == 0x7D:
            self.i += 1
            self.depth -= 1
            return
        if c == -1:
            self.fail("EOF while parsing an object", self.i)
        while True:
            if c != 0x22:
                self.fail("key must be a string", self.i + 1)
            self.i += 1
            self.string()
            c = self.ws()
            if c == 0x3A:
                self.i += 1
            elif c == -1:
                self.fail("EOF while parsing an object", self.i)
            else:
                self.fail("expected `:`", self.i + 1)
            self.value()
            c = self.ws()
            if c == 0x7D:
                self.i += 1
                self.depth -= 1
                return
            if c == 0x2C:
                self.i += 1
                c = self.ws()
                if c == 0x7D:
                    self.fail("trailing comma", self.i + 1)
                if c == -1:
                    self.fail("EOF while parsing a value", self.i)
            elif c == -1:
                self.fail("EOF while parsing an object", self.i)
            else:
                self.fail("expected `,` or `}`", self.i + 1)

    def enter(self) -> None:
        self.depth += 1
        if self.depth >= _RECURSION_LIMIT:
            self.fail("recursion limit exceeded", self.i + 1)
        self.i += 1


# --------------------------------------------------------------------------------------------
# Writing JSON as serde_json writes a `Value`.

_encode_string = json.encoder.encode_basestring  # escapes as serde_json does, UTF-8 kept


def _dump(v) -> str:
    """Compact JSON, object keys sorted by code point (Rust's string order)."""
    if isinstance(v, str):
        return _encode_string(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _format_float(v)
    if isinstance(v, list):
        return "[" + ",".join(_dump(x) for x in v) + "]"
    return "{" + ",".join(_encode_string(k) + ":" + _dump(v[k]) for k in sorted(v)) + "}"


def _format_float(f: float) -> str:
    """A finite f64 as serde_json writes it (the `zmij` crate): the shortest digits that read
    back to the same number; plain notation for decimal exponents -5..=15 with at least one digit
    after the point (`100.0`, `0.00001`), otherwise `1.5e-7` / `1e+16`."""
    if f == 0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    s = repr(f)
    negative = s.startswith("-")
    if negative:
        s = s[1:]
    mantissa, _, exp = s.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    point = len(int_part) + (int(exp) if exp else 0)
    trimmed = digits.lstrip("0")
    point -= len(digits) - len(trimmed)
    digits = trimmed.rstrip("0")
    dec_exp = point - 1
    n = len(digits)
    if -5 <= dec_exp <= 15:
        if n - 1 <= dec_exp:
            out = digits + "0" * (dec_exp - n + 1) + ".0"
        elif dec_exp >= 0:
            out = digits[: dec_exp + 1] + "." + digits[dec_exp + 1 :]
        else:
            out = "0." + "0" * (-dec_exp - 1) + digits
    else:
        frac = "." + digits[1:] if n > 1 else ""
        out = f"{digits[0]}{frac}e{'-' if dec_exp < 0 else '+'}{abs(dec_exp)}"
    return "-" + out if negative else out
