"""python-crash: a handler with a bug on request, to prove that an uncaught Python exception
reaches the dead-letter reason (pipelines/tests/crash.test.yaml).

The payload `crash` raises `CrashRequested` two calls deep; `handled` is answered with how many
messages this instance has handled, itself included (so a fresh instance answers 1); anything
else is passed on unchanged.

Built with componentize-py against plugins/python-crash/wit (world `crash`): see
scripts/build-handlers.sh.
"""

import os
import sys
from typing import List

from componentize_py_types import Ok, Result
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import HandlerError, Message, Output


def _log_crash(kind, exc, tb) -> None:
    """sys.excepthook. componentize-py calls it for an exception that escapes an export (a bug:
    anything but `Err`), then traps. Logged as `panic: …`, the exception and the innermost frames
    it came through go into the dead-letter reason, as a Rust panic's message does. (Not the
    `traceback` module: it reads source files, and a handler has no filesystem.)"""
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    text = f"{kind.__name__}: {exc}" if str(exc) else kind.__name__
    log.log(log.Level.ERROR, f"panic: {text} at {', from '.join(reversed(frames[-3:]))}")


sys.excepthook = _log_crash


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
