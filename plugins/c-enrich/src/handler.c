// c-enrich: the `json-enrich` handler (plugins/json-enrich/src/lib.rs) written in C.
//
// Validates the event envelope our users send, enriches it and routes it by type. Envelope:
// `event_type`, `event_id`, `timestamp`, `version`, `data` (object) and `metadata` (`producer`,
// optional `trace_id`, `correlation_id`). A payload that is not such an envelope is rejected as
// `invalid` with the reason. Valid events get `processed_at` (the host's receive time, ms since
// the Unix epoch) and `processed_by`, an `event-type` header, and a route chosen by the part of
// `event_type` before the first dot, from `init` settings `route.<prefix>: <sink>`.
//
// `enrich.h` is generated at build time by `sluice plugin bindings c` from wit/ (world
// `enrich`); see scripts/build-handlers.sh. Its ownership rules: the arguments of an export are
// ours to free, and everything in a return value must be malloc'd (the generated post-return
// code frees it after the host has copied it).
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "enrich.h"
#include "json.h"

typedef exports_sluice_plugin_message_handler_message_t message_t;
typedef exports_sluice_plugin_message_handler_output_t output_t;
typedef exports_sluice_plugin_message_handler_list_output_t outputs_t;
typedef exports_sluice_plugin_message_handler_handler_error_t handler_error_t;
typedef enrich_list_tuple2_string_string_t settings_t;

#define PROCESSED_BY "sluice/json-enrich"
#define ROUTE_PREFIX "route."

// The `init` settings, kept as they came: every key is `route.<event type prefix>` and every
// value a sink. NULL until `init` has run.
static settings_t *routes;

static enrich_string_t take_string(buf *b) {
  enrich_string_t s = {(uint8_t *)b->data, b->len};
  *b = (buf){0};
  return s;
}

static void put_string(buf *b, const enrich_string_t *s) { buf_add(b, s->ptr, s->len); }

bool exports_sluice_plugin_lifecycle_init(settings_t *config, enrich_string_t *err) {
  buf why = {0};
  for (size_t i = 0; i < config->len && !why.len; i++) {
    const enrich_string_t *key = &config->ptr[i].f0, *sink = &config->ptr[i].f1;
    size_t n = strlen(ROUTE_PREFIX);
    if (key->len <= n || memcmp(key->ptr, ROUTE_PREFIX, n) != 0 || sink->len == 0) {
      buf_str(&why, "unknown setting `");
      put_string(&why, key);
      buf_str(&why, "` (expected `route.<event type prefix>: <sink>`)");
    }
  }
  if (!why.len && routes) buf_str(&why, "init called twice");
  if (why.len) {
    enrich_list_tuple2_string_string_free(config);
    *err = take_string(&why);
    return false;
  }
  routes = xmalloc(sizeof *routes);
  *routes = *config;
  return true;
}

// --- the envelope --------------------------------------------------------------------------------

// Each check returns false with the reason in `why`.

static bool field(const json_doc *doc, int obj, const char *name, int *value, buf *why) {
  *value = json_member(doc, obj, name);
  if (*value >= 0) return true;
  buf_str(why, "envelope is missing `");
  buf_str(why, name);
  buf_str(why, "`");
  return false;
}

static bool string_field(const json_doc *doc, int obj, const char *name, int *value, buf *why) {
  if (!field(doc, obj, name, value, why)) return false;
  if (json_kind(doc, *value) == JSON_STRING && !json_string_is_empty(doc, *value)) return true;
  buf_str(why, "envelope field `");
  buf_str(why, name);
  buf_str(why, "` must be a non-empty string");
  return false;
}

static bool fail(buf *why, const char *reason) {
  buf_str(why, reason);
  return false;
}

// Checks the envelope in the order the Rust handler does, so that the first problem reported is
// the same; on success `*event_type` is the `event_type` value.
static bool check_envelope(const json_doc *doc, int *event_type, buf *why) {
  const int root = JSON_ROOT;
  int v;
  if (json_kind(doc, root) != JSON_OBJECT) return fail(why, "envelope must be a JSON object");
  if (!string_field(doc, root, "event_type", event_type, why) ||
      !string_field(doc, root, "event_id", &v, why) ||
      !string_field(doc, root, "version", &v, why) || !field(doc, root, "timestamp", &v, why)) {
    return false;
  }
  if (json_kind(doc, v) != JSON_NUMBER && json_kind(doc, v) != JSON_STRING) {
    return fail(why, "envelope field `timestamp` must be a number or a string");
  }
  if (!field(doc, root, "data", &v, why)) return false;
  if (json_kind(doc, v) != JSON_OBJECT) return fail(why, "envelope field `data` must be an object");
  int metadata;
  if (!field(doc, root, "metadata", &metadata, why)) return false;
  if (json_kind(doc, metadata) != JSON_OBJECT) {
    return fail(why, "envelope field `metadata` must be an object");
  }
  v = json_member(doc, metadata, "producer");
  if (v < 0 || json_kind(doc, v) != JSON_STRING || json_string_is_empty(doc, v)) {
    return fail(why, "envelope field `metadata.producer` must be a non-empty string");
  }
  static const char *const optional[] = {"trace_id", "correlation_id"};
  for (size_t i = 0; i < 2; i++) {
    v = json_member(doc, metadata, optional[i]);
    if (v >= 0 && json_kind(doc, v) != JSON_STRING) {
      buf_str(why, "envelope field `metadata.");
      buf_str(why, optional[i]);
      return fail(why, "` must be a string");
    }
  }
  return true;
}

// The sink for an event type: the route whose prefix is the part before the first dot.
static const enrich_string_t *route_for(const buf *event_type) {
  if (!routes) return NULL;
  const char *dot = memchr(event_type->data, '.', event_type->len);
  size_t len = dot ? (size_t)(dot - event_type->data) : event_type->len;
  size_t skip = strlen(ROUTE_PREFIX);
  for (size_t i = 0; i < routes->len; i++) {
    const enrich_string_t *key = &routes->ptr[i].f0;
    if (key->len - skip == len && memcmp(key->ptr + skip, event_type->data, len) == 0) {
      return &routes->ptr[i].f1;
    }
  }
  return NULL;
}

// --- the handler ---------------------------------------------------------------------------------

// Builds the one output of a valid envelope, moving the key and headers over from `msg`.
static void enrich(message_t *msg, const json_doc *doc, int event_type_value, outputs_t *ret) {
  buf event_type = {0}, payload = {0};
  json_string(doc, event_type_value, &event_type);
  char received[24];
  snprintf(received, sizeof received, "%lld", (long long)msg->metadata.received_ms);
  const json_extra extra[] = {{"processed_at", received},
                              {"processed_by", "\"" PROCESSED_BY "\""}};
  json_write(doc, JSON_ROOT, extra, 2, &payload);

  output_t *out = xmalloc(sizeof *out);
  *out = (output_t){.payload = {(uint8_t *)payload.data, payload.len}, .key = msg->key};
  msg->key.is_some = false;
  const enrich_string_t *sink = route_for(&event_type);
  if (sink) {
    out->route.is_some = true;
    enrich_string_dup_n(&out->route.val, (const char *)sink->ptr, sink->len);
  }
  // An empty list's pointer is not malloc's (the canonical ABI allocates nothing for it).
  sluice_plugin_types_headers_t *headers = &msg->headers;
  headers->ptr = xrealloc(headers->len ? headers->ptr : NULL, (headers->len + 1) * sizeof *headers->ptr);
  enrich_string_dup(&headers->ptr[headers->len].f0, "event-type");
  headers->ptr[headers->len].f1 = take_string(&event_type);
  headers->len++;
  out->headers = *headers;
  *headers = (sluice_plugin_types_headers_t){0};
  *ret = (outputs_t){out, 1};
}

// Handles one message and frees it; false with `err` set when it is refused.
static bool handle(message_t *msg, outputs_t *ret, handler_error_t *err) {
  buf why = {0};
  buf_str(&why, "payload is not valid JSON: ");
  json_doc *doc = json_parse((const char *)msg->payload.ptr, msg->payload.len, &why);
  int event_type = -1;
  if (doc) {
    buf_free(&why);
    if (check_envelope(doc, &event_type, &why)) enrich(msg, doc, event_type, ret);
    json_free(doc);
  }
  exports_sluice_plugin_message_handler_message_free(msg);
  if (!why.len) return true;
  *err = (handler_error_t){.tag = SLUICE_PLUGIN_TYPES_HANDLER_ERROR_INVALID};
  err->val.invalid = take_string(&why);
  return false;
}

bool exports_sluice_plugin_message_handler_handle(message_t *msg, outputs_t *ret,
                                                  handler_error_t *err) {
  return handle(msg, ret, err);
}

void exports_sluice_plugin_message_handler_handle_batch(
    exports_sluice_plugin_message_handler_list_message_t *msgs,
    exports_sluice_plugin_message_handler_list_result_list_output_handler_error_t *ret) {
  ret->len = msgs->len;
  ret->ptr = xmalloc(msgs->len * sizeof *ret->ptr);
  for (size_t i = 0; i < msgs->len; i++) {
    ret->ptr[i].is_err = !handle(&msgs->ptr[i], &ret->ptr[i].val.ok, &ret->ptr[i].val.err);
  }
  // The messages are freed one by one above; what is left is the list itself.
  free(msgs->ptr);
}
