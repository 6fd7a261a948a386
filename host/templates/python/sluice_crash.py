"""Crash messages for a Sluice handler: `sluice_crash.install()` once, at import time.

componentize-py calls `sys.excepthook` for an exception that escapes an export (a bug: anything
but `Err`), then traps. This hook logs it as `panic: <type>: <message> at <innermost frames>`
through the host's `log` import, and the host puts the last such line into the trap's
dead-letter reason, as it does for a Rust panic. (Not the `traceback` module: it reads source
files, and a handler has no filesystem.)
"""

import os
import sys

from wit_world.imports import log


def log_crash(kind, exc, tb) -> None:
    """`sys.excepthook`: the exception and the three innermost frames, as one `panic:` line."""
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    text = f"{kind.__name__}: {exc}" if str(exc) else kind.__name__
    log.log(log.Level.ERROR, f"panic: {text} at {', from '.join(reversed(frames[-3:]))}")


def install() -> None:
    sys.excepthook = log_crash
