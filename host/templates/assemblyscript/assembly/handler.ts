// {{name}}: a Sluice handler in AssemblyScript.
//
// Adds `handled_by` (and the `tag` setting, when the pipeline gives one) to each JSON object it
// receives; anything else is refused as `invalid`, which sends it to the dead-letter sink.

import { Config, HandlerError, Headers, Message, Outputs, invalid, register } from "./sluice";
import * as json from "./sluice/json";

// The component's exports (handle, handle-batch, init), which call the functions registered
// at the bottom. Keep this line in the entry file.
export * from "./sluice/exports";

/** The `tag` setting from the pipeline's `config`, set once by `init`. */
let tag: string | null = null;

function init(config: Config): string | null {
  for (let i = 0; i < config.length; i++) {
    const key = config.key(i);
    if (key != "tag") return `unknown setting \`${key}\` (expected \`tag\`)`;
    tag = config.value(i);
  }
  return null;
}

function handle(msg: Message, out: Outputs): HandlerError | null {
  const value = json.parse(msg.payload);
  if (value == null) return invalid(`payload is not a JSON object: ${json.parseError()}`);
  const event = value.asObject();
  if (event == null) return invalid("payload is not a JSON object");
  event.set("handled_by", json.JsonString.of("{{name}}"));
  const setting = tag;
  if (setting != null) event.set("tag", json.JsonString.of(setting));
  const headers = Headers.of(msg).add("x-handled-by", "{{name}}");
  out.push(json.stringify(event), msg.key, headers);
  return null;
}

register(handle, init);
