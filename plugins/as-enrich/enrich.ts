// as-enrich: the `json-enrich` handler (plugins/json-enrich/src/lib.rs) written in AssemblyScript.
//
// Validates the event envelope our users send, enriches it and routes it by type. Envelope:
// `event_type`, `event_id`, `timestamp`, `version`, `data` (object) and `metadata` (`producer`,
// optional `trace_id`, `correlation_id`). A payload that is not such an envelope is rejected as
// `invalid` with the reason. Valid events get `processed_at` (the host's receive time, ms since
// the Unix epoch) and `processed_by`, an `event-type` header, and a route chosen by the part of
// `event_type` before the first dot, from `init` settings `route.<prefix>: <sink>`.
//
// The ABI layer and the JSON reader are the ones `sluice new --lang assemblyscript` hands out
// (host/templates/assemblyscript/assembly/sluice); its JSON follows serde_json's rules, so outputs
// and error texts are the Rust handler's. Built by scripts/build-handlers.sh (asconfig.json).

import {
  Config,
  HandlerError,
  Headers,
  Message,
  Outputs,
  invalid,
  register,
} from "../../host/templates/assemblyscript/assembly/sluice";
import * as json from "../../host/templates/assemblyscript/assembly/sluice/json";

export * from "../../host/templates/assemblyscript/assembly/sluice/exports";

/** Written into every enriched event, the same value as the Rust handler's. */
const PROCESSED_BY = "sluice/json-enrich";

/** Event type prefixes and their sinks, from `init`; null until `init` has run. */
let prefixes: Array<string> | null = null;
let sinks = new Array<string>();

function init(config: Config): string | null {
  const routePrefixes = new Array<string>();
  const routeSinks = new Array<string>();
  for (let i = 0; i < config.length; i++) {
    const key = config.key(i);
    const value = config.value(i);
    const prefix = key.startsWith("route.") ? key.substring(6) : "";
    if (prefix.length == 0 || value.length == 0) {
      return `unknown setting \`${key}\` (expected \`route.<event type prefix>: <sink>\`)`;
    }
    routePrefixes.push(prefix);
    routeSinks.push(value);
  }
  if (prefixes != null) return "init called twice";
  prefixes = routePrefixes;
  sinks = routeSinks;
  return null;
}

function handle(msg: Message, out: Outputs): HandlerError | null {
  const parsed = json.parse(msg.payload);
  if (parsed == null) return invalid(`payload is not valid JSON: ${json.parseError()}`);
  const event = parsed.asObject();
  if (event == null) return invalid("envelope must be a JSON object");

  let error = requireString(event, "event_type");
  if (error == null) error = requireString(event, "event_id");
  if (error == null) error = requireString(event, "version");
  if (error != null) return error;
  const timestamp = event.get("timestamp");
  if (timestamp == null) return missing("timestamp");
  if (timestamp.asNumber() == null && timestamp.asString() == null) {
    return invalid("envelope field `timestamp` must be a number or a string");
  }
  const data = event.get("data");
  if (data == null) return missing("data");
  if (data.asObject() == null) return invalid("envelope field `data` must be an object");
  const metadataValue = event.get("metadata");
  if (metadataValue == null) return missing("metadata");
  const metadata = metadataValue.asObject();
  if (metadata == null) return invalid("envelope field `metadata` must be an object");
  const producer = metadata.get("producer");
  if (producer == null || !nonEmptyString(producer)) {
    return invalid("envelope field `metadata.producer` must be a non-empty string");
  }
  for (let k = 0; k < 2; k++) {
    const name = k == 0 ? "trace_id" : "correlation_id";
    const optional = metadata.get(name);
    if (optional != null && optional.asString() == null) {
      return invalid(`envelope field \`metadata.${name}\` must be a string`);
    }
  }

  const eventType = changetype<json.JsonString>(event.get("event_type")).toString();
  event.set("processed_at", json.JsonNumber.ofI64(msg.receivedMs));
  event.set("processed_by", json.JsonString.of(PROCESSED_BY));
  const dot = eventType.indexOf(".");
  const prefix = dot >= 0 ? eventType.substring(0, dot) : eventType;
  const routes = prefixes;
  const at = routes != null ? routes.indexOf(prefix) : -1;
  const headers = Headers.of(msg).add("event-type", eventType);
  out.push(json.stringify(event), msg.key, headers, at >= 0 ? sinks[at] : null);
  return null;
}

function missing(name: string): HandlerError {
  return invalid(`envelope is missing \`${name}\``);
}

function nonEmptyString(value: json.JsonValue): bool {
  const s = value.asString();
  return s != null && s.length > 0;
}

/** The Rust handler's `string_field`: present, and a non-empty string. */
function requireString(event: json.JsonObject, name: string): HandlerError | null {
  const value = event.get(name);
  if (value == null) return missing(name);
  if (!nonEmptyString(value)) return invalid(`envelope field \`${name}\` must be a non-empty string`);
  return null;
}

register(handle, init);
