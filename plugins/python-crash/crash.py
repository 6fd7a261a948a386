"""python-crash: a handler with a bug on request, to prove that an uncaught Python exception
reaches the dead-letter reason (pipelines/tests/crash.test.yaml).

The payload `crash` raises `CrashRequested` two calls deep; `handled` is answered with how many
messages this instance has handled, itself included (so a fresh instance answers 1); anything
else is passed on unchanged.

Built with componentize-py against plugins/python-crash/wit (world `crash`): see
scripts/build-handlers.sh.
"""

from typing import List

from componentize_py_types import Ok, Result
from wit_world import exports
from wit_world.imports.types import HandlerError, Message, Output

import sluice_crash


sluice_crash.install()  # an uncaught exception's message goes to the dead-letter reason


class CrashRequested(Exception):
    pass


# Messages this instance has handled: module state, which lives as long as the instance.
_handled = 0


class MessageHandler(exports.MessageHandler):
    def handle(self, msg: Message) -> List[Output]:
        return _handle(msg)

    def handle_batch(self, msgs: List[Message]) -> List[Result[List[Output], HandlerError]]:
        return [Ok(_handle(msg)) for msg in msgs]


def _handle(msg: Message) -> List[Output]:
    global _handled
    _handled += 1
    payload = msg.payload
    if payload == b"crash":
        _explode()
    elif payload == b"handled":
        payload = str(_handled).encode()
    return [Output(payload=payload, key=msg.key, headers=msg.headers, route=None)]


def _explode() -> None:
    raise CrashRequested("asked to crash")
