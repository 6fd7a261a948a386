// Strict JSON on top of jsmn (Debian's libjsmn-dev, header only).
//
// jsmn is a tokenizer: even in strict mode it lets through missing or doubled commas and
// colons, bad literals and numbers (`[1 2]`, `{"a":1,}`, `tru`, `01`), control characters and
// invalid UTF-8 in strings, and lone surrogates in `\u` escapes. The handler must refuse exactly
// what serde_json refuses, so after jsmn has cut the text into tokens, `check_value` walks the
// token tree over the bytes: it checks every separator between tokens, every literal, number
// and string, and the nesting depth, and sets each token's `next`, so that no byte of the text
// goes unchecked.
#include "json.h"
#include "number.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

// serde_json refuses the 128th level of nested arrays and objects.
#define MAX_DEPTH 128

struct json_doc {
  const char *text;
  size_t len;
  jsmntok_t *tok;
  int *next;  // next[i]: the token after the value that token i starts
  int count;
};

// --- parsing -------------------------------------------------------------------------------------

typedef struct {
  const json_doc *doc;
  int *next;         // the document's `next`, filled in by check_value
  const char *what;  // the first problem found, or NULL
  size_t at;         // its byte offset
} checker;

static bool fail(checker *c, const char *what, size_t at) {
  c->what = what;
  c->at = at;
  return false;
}

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

static size_t skip_ws(const json_doc *d, size_t at) {
  while (at < d->len && is_ws(d->text[at])) at++;
  return at;
}

static int hex4(const char *s) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char h = s[i];
    v = v * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
  }
  return v;
}

static void put_utf8(buf *out, uint32_t cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (char)(0xc0 | cp >> 6);
    b[1] = (char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xe0 | cp >> 12);
    b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    b[2] = (char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    b[0] = (char)(0xf0 | cp >> 18);
    b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  buf_add(out, b, n);
}

// Length of the valid UTF-8 sequence at s[0..n), 0 if there is none (overlong forms, encoded
// surrogates and code points past U+10FFFF are invalid, as in Rust's str).
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++) {
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  }
  return len;
}

// Checks the body of a string jsmn has delimited (jsmn has checked that each escape is one of
// JSON's, with four hex digits after `\u`) and, when `out` is given, appends its text. Returns
// false with the problem in `c` for what serde_json refuses in a string.
static bool scan_string(checker *c, size_t start, size_t end, buf *out) {
  const unsigned char *s = (const unsigned char *)c->doc->text;
  size_t i = start;
  while (i < end) {
    size_t run = i;
    while (i < end && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '\\') i++;
    if (out) buf_add(out, s + run, i - run);
    if (i == end) break;
    if (s[i] < 0x20) {
      return fail(c, "control character (\\u0000-\\u001F) found while parsing a string", i);
    }
    if (s[i] >= 0x80) {
      size_t len = utf8_len(s + i, end - i);
      if (len == 0) return fail(c, "invalid unicode code point", i);
      if (out) buf_add(out, s + i, len);
      i += len;
      continue;
    }
    char e = (char)s[i + 1];
    if (e != 'u') {
      static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
      if (out) buf_char(out, to[strchr(from, e) - from]);
      i += 2;
      continue;
    }
    // UTF-16 surrogates must come in pairs for the text to be a Unicode string.
    uint32_t cp = (uint32_t)hex4((const char *)s + i + 2);
    i += 6;
    if (cp >= 0xdc00 && cp <= 0xdfff) return fail(c, "lone leading surrogate in hex escape", i);
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (end - i < 6 || s[i] != '\\' || s[i + 1] != 'u') {
        return fail(c, "unexpected end of hex escape", i);
      }
      uint32_t low = (uint32_t)hex4((const char *)s + i + 2);
      i += 6;
      if (low < 0xdc00 || low > 0xdfff) return fail(c, "lone leading surrogate in hex escape", i);
      cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    if (out) put_utf8(out, cp);
  }
  return true;
}

// A number token: what number_read says, as a problem in `c` when it is not a number serde_json
// reads.
static bool check_number(checker *c, size_t at, size_t n) {
  double f;
  size_t bad = 0;
  switch (number_read(c->doc->text + at, n, &f, &bad)) {
    case NUMBER_INVALID:
      return fail(c, "invalid number", at + bad);
    case NUMBER_OUT_OF_RANGE:
      return fail(c, "number out of range", at + bad);
    default:
      return true;
  }
}

static bool check_primitive(checker *c, size_t at, size_t n) {
  const char *s = c->doc->text + at;
  if (s[0] == 't' || s[0] == 'f' || s[0] == 'n') {
    static const char *const literals[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
      if (n == strlen(literals[i]) && memcmp(s, literals[i], n) == 0) return true;
    }
    return fail(c, "expected ident", at);
  }
  return check_number(c, at, n);
}

// Checks the value starting at token i, which must start at byte *at, moves *at past it and
// returns the token after it (or -1, with the problem in `c`).
static int check_value(checker *c, int i, size_t *at, int depth) {
  const json_doc *d = c->doc;
  if (i >= d->count) return fail(c, "expected value", *at), -1;
  const jsmntok_t *t = &d->tok[i];
  size_t start = (size_t)t->start, end = (size_t)t->end;
  int next = i + 1;
  switch (t->type) {
    case JSMN_STRING:
      if (start != *at + 1) return fail(c, "expected value", *at), -1;
      if (!scan_string(c, start, end, NULL)) return -1;
      *at = end + 1;
      break;
    case JSMN_PRIMITIVE:
      if (start != *at) return fail(c, "expected value", *at), -1;
      if (!check_primitive(c, start, end - start)) return -1;
      *at = end;
      break;
    case JSMN_OBJECT:
    case JSMN_ARRAY: {
      if (start != *at) return fail(c, "expected value", *at), -1;
      if (depth + 1 >= MAX_DEPTH) return fail(c, "recursion limit exceeded", start), -1;
      bool object = t->type == JSMN_OBJECT;
      const char *expected = object ? "expected `,` or `}`" : "expected `,` or `]`";
      size_t pos = start + 1;
      for (int k = 0; k < t->size; k++) {
        pos = skip_ws(d, pos);
        if (k > 0) {
          if (pos >= d->len || d->text[pos] != ',') return fail(c, expected, pos), -1;
          pos = skip_ws(d, pos + 1);
        }
        if (object) {
          if (pos >= d->len || d->text[pos] != '"' || next >= d->count ||
              d->tok[next].type != JSMN_STRING) {
            return fail(c, "key must be a string", pos), -1;
          }
          next = check_value(c, next, &pos, depth + 1);
          if (next < 0) return -1;
          pos = skip_ws(d, pos);
          if (pos >= d->len || d->text[pos] != ':') return fail(c, "expected `:`", pos), -1;
          pos = skip_ws(d, pos + 1);
        }
        next = check_value(c, next, &pos, depth + 1);
        if (next < 0) return -1;
      }
      pos = skip_ws(d, pos);
      if (pos != end - 1) return fail(c, t->size ? expected : "expected value", pos), -1;
      *at = end;
      break;
    }
    default:
      return fail(c, "expected value", *at), -1;
  }
  c->next[i] = next;
  return next;
}

// Appends "<what> at line L column C" (C counts bytes from 1, as serde_json does).
static void describe(const json_doc *d, const char *what, size_t at, buf *out) {
  size_t line = 1, column = 0;
  for (size_t i = 0; i < at && i < d->len; i++) {
    if (d->text[i] == '\n') {
      line++;
      column = 0;
    } else {
      column++;
    }
  }
  char where[64];
  snprintf(where, sizeof where, " at line %zu column %zu", line, column + 1);
  buf_str(out, what);
  buf_str(out, where);
}

// jsmn refuses a lone number or literal as the whole text (it wants a delimiter after one), so
// that case gets its single token here.
static int tokenize_primitive(json_doc *d, size_t start) {
  size_t end = start;
  while (end < d->len && !is_ws(d->text[end])) end++;
  d->tok = xmalloc(sizeof *d->tok);
  d->tok[0] = (jsmntok_t){.type = JSMN_PRIMITIVE, .start = (int)start, .end = (int)end};
  return 1;
}

json_doc *json_parse(const char *text, size_t len, buf *error) {
  json_doc *d = xmalloc(sizeof *d);
  *d = (json_doc){.text = text, .len = len};
  checker c = {.doc = d};
  size_t first = skip_ws(d, 0);
  if (len > INT32_MAX) {
    fail(&c, "payload too large", 0);
  } else if (first == len) {
    fail(&c, "EOF while parsing a value", len);
  } else if (text[first] != '{' && text[first] != '[' && text[first] != '"') {
    d->count = tokenize_primitive(d, first);
  } else {
    jsmn_parser p;
    jsmn_init(&p);
    int count = jsmn_parse(&p, text, len, NULL, 0);
    if (count > 0) {
      d->tok = xmalloc((size_t)count * sizeof *d->tok);
      jsmn_init(&p);
      count = jsmn_parse(&p, text, len, d->tok, (unsigned)count);
    }
    if (count == JSMN_ERROR_PART) {
      fail(&c, "EOF while parsing a value", len);
    } else if (count < 0) {
      // jsmn stops at a string's opening quote for a bad escape, else at the byte it refused.
      fail(&c, text[p.pos] == '"' ? "invalid escape" : "unexpected character", p.pos);
    } else {
      d->count = count;
    }
  }
  if (!c.what) {
    d->next = c.next = xmalloc((size_t)d->count * sizeof *d->next);
    size_t at = first;
    int next = check_value(&c, JSON_ROOT, &at, 0);
    if (next >= 0 && (skip_ws(d, at) != len || next != d->count)) {
      fail(&c, "trailing characters", skip_ws(d, at));
    }
  }
  if (c.what) {
    describe(d, c.what, c.at, error);
    json_free(d);
    return NULL;
  }
  return d;
}

void json_free(json_doc *doc) {
  if (!doc) return;
  free(doc->tok);
  free(doc->next);
  free(doc);
}

// --- reading -------------------------------------------------------------------------------------

json_kind_t json_kind(const json_doc *doc, int value) {
  const jsmntok_t *t = &doc->tok[value];
  switch (t->type) {
    case JSMN_OBJECT:
      return JSON_OBJECT;
    case JSMN_ARRAY:
      return JSON_ARRAY;
    case JSMN_STRING:
      return JSON_STRING;
    default:
      return strchr("tfn", doc->text[t->start]) ? JSON_LITERAL : JSON_NUMBER;
  }
}

bool json_string_is_empty(const json_doc *doc, int value) {
  return doc->tok[value].start == doc->tok[value].end;
}

void json_string(const json_doc *doc, int value, buf *out) {
  checker c = {.doc = doc};
  scan_string(&c, (size_t)doc->tok[value].start, (size_t)doc->tok[value].end, out);
}

// A member name, escapes resolved: borrowed from the text when it has none, else `owned`.
typedef struct {
  const char *ptr;
  size_t len;
  buf owned;
} key_text;

static key_text key_of(const json_doc *doc, int key) {
  const jsmntok_t *t = &doc->tok[key];
  const char *raw = doc->text + t->start;
  size_t len = (size_t)(t->end - t->start);
  key_text k = {.ptr = raw, .len = len};
  if (memchr(raw, '\\', len)) {
    json_string(doc, key, &k.owned);
    k.ptr = k.owned.data;
    k.len = k.owned.len;
  }
  return k;
}

int json_member(const json_doc *doc, int obj, const char *key) {
  size_t key_len = strlen(key);
  int found = -1;
  int k = obj + 1;
  for (int m = 0; m < doc->tok[obj].size; m++, k = doc->next[k + 1]) {
    key_text name = key_of(doc, k);
    if (name.len == key_len && memcmp(name.ptr, key, key_len) == 0) found = k + 1;
    buf_free(&name.owned);
  }
  return found;
}

// --- writing -------------------------------------------------------------------------------------

typedef struct {
  key_text name;
  int key;           // the key's token, or -1 for an extra member
  const char *json;  // an extra member's value
  size_t order;      // position in the object: among equal names the last one counts
} member;

static int by_name_then_order(const void *a, const void *b) {
  const member *x = a, *y = b;
  size_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
  int cmp = memcmp(x->name.ptr, y->name.ptr, n);
  if (cmp == 0 && x->name.len != y->name.len) cmp = x->name.len < y->name.len ? -1 : 1;
  if (cmp == 0) cmp = x->order < y->order ? -1 : 1;
  return cmp;
}

static bool same_name(const member *x, const member *y) {
  return x->name.len == y->name.len && memcmp(x->name.ptr, y->name.ptr, x->name.len) == 0;
}

static void write_object(const json_doc *doc, int obj, const json_extra *extra, size_t n_extra,
                         buf *out) {
  size_t n_doc = (size_t)doc->tok[obj].size, total = n_doc + n_extra;
  member *m = xmalloc(total * sizeof *m);
  int k = obj + 1;
  for (size_t i = 0; i < n_doc; i++, k = doc->next[k + 1]) {
    m[i] = (member){.name = key_of(doc, k), .key = k, .order = i};
  }
  for (size_t i = 0; i < n_extra; i++) {
    m[n_doc + i] = (member){.name = {.ptr = extra[i].key, .len = strlen(extra[i].key)},
                            .key = -1,
                            .json = extra[i].json,
                            .order = n_doc + i};
  }
  qsort(m, total, sizeof *m, by_name_then_order);
  buf_char(out, '{');
  bool first = true;
  for (size_t i = 0; i < total; i++) {
    if (i + 1 < total && same_name(&m[i], &m[i + 1])) continue;
    if (!first) buf_char(out, ',');
    first = false;
    if (m[i].key < 0) {
      buf_char(out, '"');
      buf_str(out, m[i].name.ptr);
      buf_str(out, "\":");
      buf_str(out, m[i].json);
    } else {
      // The name as it was written (escapes and all), and the value.
      const jsmntok_t *t = &doc->tok[m[i].key];
      buf_add(out, doc->text + t->start - 1, (size_t)(t->end - t->start + 2));
      buf_char(out, ':');
      json_write(doc, m[i].key + 1, NULL, 0, out);
    }
  }
  buf_char(out, '}');
  for (size_t i = 0; i < total; i++) buf_free(&m[i].name.owned);
  free(m);
}

void json_write(const json_doc *doc, int value, const json_extra *extra, size_t n_extra, buf *out) {
  const jsmntok_t *t = &doc->tok[value];
  switch (t->type) {
    case JSMN_OBJECT:
      write_object(doc, value, extra, n_extra, out);
      break;
    case JSMN_ARRAY: {
      buf_char(out, '[');
      int k = value + 1;
      for (int i = 0; i < t->size; i++, k = doc->next[k]) {
        if (i > 0) buf_char(out, ',');
        json_write(doc, k, NULL, 0, out);
      }
      buf_char(out, ']');
      break;
    }
    case JSMN_STRING:
      buf_add(out, doc->text + t->start - 1, (size_t)(t->end - t->start + 2));
      break;
    default: {
      const char *text = doc->text + t->start;
      size_t len = (size_t)(t->end - t->start), bad;
      double f;
      if (json_kind(doc, value) == JSON_NUMBER && number_read(text, len, &f, &bad) == NUMBER_FLOAT) {
        number_write_float(f, out);
      } else {
        buf_add(out, text, len);
      }
    }
  }
}
