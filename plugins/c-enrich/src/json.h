// Strict JSON documents: jsmn's tokens, checked to accept exactly what serde_json (the Rust
// handler's parser) accepts, and written back the way serde_json writes a `Value`.
//
// A value is the index of its token; the document's own value is JSON_ROOT. Nothing is copied
// on parse: the document points into the text, which must outlive it.
#ifndef ENRICH_JSON_H
#define ENRICH_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define JSON_ROOT 0

typedef struct json_doc json_doc;

typedef enum { JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_NUMBER, JSON_LITERAL } json_kind_t;

// A member the writer adds to an object, replacing a member of the same name.
typedef struct {
  const char *key;   // plain ASCII, nothing to escape
  const char *json;  // the value, already JSON
} json_extra;

// Parses `len` bytes as one JSON value. On a syntax error returns NULL and appends what is wrong
// and where to `error`, in serde_json's words where it has one ("trailing characters at line 1
// column 9").
json_doc *json_parse(const char *text, size_t len, buf *error);

void json_free(json_doc *doc);

json_kind_t json_kind(const json_doc *doc, int value);

// The value of member `key` of object `obj`, or -1. When a key repeats the last one counts, as
// in serde_json.
int json_member(const json_doc *doc, int obj, const char *key);

bool json_string_is_empty(const json_doc *doc, int value);

// Appends the string value's text, escapes resolved (valid UTF-8).
void json_string(const json_doc *doc, int value, buf *out);

// Appends `value` as compact JSON with object keys sorted and repeated keys dropped, as
// serde_json writes it; `extra` members (n_extra > 0 only for an object) are added to it.
// Numbers serde_json reads as floats are written as the same f64 it gets.
void json_write(const json_doc *doc, int value, const json_extra *extra, size_t n_extra, buf *out);

#endif
