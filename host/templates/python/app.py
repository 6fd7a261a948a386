"""{{name}}: a Sluice handler in Python.

Adds `handled_by` (and the `tag` setting, when the pipeline gives one) to each JSON object it
receives; anything else is refused as `invalid`, which sends it to the dead-letter sink.
"""

import json
from typing import List, Optional, Tuple

from componentize_py_types import Err, Ok, Result
from wit_world import exports
from wit_world.imports.types import HandlerError, HandlerError_Invalid, Message, Output

import sluice_crash

# The `tag` setting from the pipeline's `config`, set once by `init`.
_tag: Optional[str] = None


sluice_crash.install()  # an uncaught exception's message goes to the dead-letter reason


class Lifecycle(exports.Lifecycle):
    def init(self, config: List[Tuple[str, str]]) -> None:
        global _tag
        for key, value in config:
            if key != "tag":
                raise Err(f"unknown setting `{key}` (expected `tag`)")
            _tag = value


class MessageHandler(exports.MessageHandler):
    def handle(self, msg: Message) -> List[Output]:
        return _handle(msg)

    def handle_batch(self, msgs: List[Message]) -> List[Result[List[Output], HandlerError]]:
        results: List[Result[List[Output], HandlerError]] = []
        for msg in msgs:
            try:
                results.append(Ok(_handle(msg)))
            except Err as e:
                results.append(e)
        return results


def _handle(msg: Message) -> List[Output]:
    try:
        event = json.loads(bytes(msg.payload))
    except ValueError as e:
        raise Err(HandlerError_Invalid(f"payload is not a JSON object: {e}"))
    if not isinstance(event, dict):
        raise Err(HandlerError_Invalid("payload is not a JSON object"))
    event["handled_by"] = "{{name}}"
    if _tag is not None:
        event["tag"] = _tag
    headers = list(msg.headers) + [("x-handled-by", "{{name}}")]
    payload = json.dumps(event, separators=(",", ":")).encode()
    return [Output(payload=payload, key=msg.key, headers=headers, route=None)]
