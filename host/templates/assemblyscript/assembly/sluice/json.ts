// JSON for handlers: `parse` a payload into values, change them, `stringify` them back. It reads
// and writes as the Rust SDK (serde_json) does, with its error messages; see json-value.ts for
// the values, and why they live only as long as the call.

export { JsonArray, JsonBool, JsonKind, JsonNull, JsonNumber, JsonObject, JsonString, JsonValue } from "./json-value";
export { parse, parseError } from "./json-parse";
export { stringify } from "./json-write";
