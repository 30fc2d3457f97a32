"""structlog set-up, called once from main(); library code only asks for loggers.

Every log line leaves the process whole: the line and its newline in one `write(2)` (structlog's
PrintLogger prints them as two), under one lock per process, so threads never split each other's
lines. Under `--workers` the workers do not write to the shared stderr at all: each sends its lines
over a pipe of its own to the supervisor, which writes them, so lines of two workers cannot mix
even when longer than the 4 KiB a pipe write keeps whole (server/workers.py).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import structlog

_write_lock = threading.Lock()

Sink = Callable[[bytes], None]


def write_line(line: bytes, fd: int | None = None) -> None:
    """Write one whole line (its newline included) to fd (stderr by default), retrying partial writes
    under the process's lock: no other line of this process can land inside it."""
    if fd is None:
        try:
            fd = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # a stderr with no file behind it (captured)
            with _write_lock:
                sys.stderr.write(line.decode("utf-8", "replace"))
            return
    target = fd
    view = memoryview(line)
    with _write_lock:
        while view:
            written = os.write(target, view)
            view = view[written:]


class LineLogger:
    """A structlog logger that hands each rendered line, with its newline, to a sink in one piece."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def msg(self, message: str) -> None:
        self._sink(message.encode("utf-8", "backslashreplace") + b"\n")

    log = debug = info = warn = warning = error = err = critical = fatal = exception = failure = msg


def _serialized(sink: Sink) -> Sink:
    """The sink, called by one thread at a time (a multiprocessing Connection is not thread-safe:
    two threads sending at once can interleave one message's length header with another's bytes)."""

    def send(line: bytes) -> None:
        with _write_lock:
            sink(line)

    return send


class LineLoggerFactory:
    def __init__(self, sink: Sink | None = None) -> None:
        self._logger = LineLogger(_serialized(sink) if sink is not None else write_line)

    def __call__(self, *args: Any) -> LineLogger:
        return self._logger


def configure(level: str, fmt: str, sink: Sink | None = None) -> None:
    """Log JSON (or console) lines at `level` and above, each whole, to `sink` (default: stderr)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=LineLoggerFactory(sink),
        cache_logger_on_first_use=True,
    )
