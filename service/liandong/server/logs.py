"""structlog set-up, called once from main(); library code only asks for loggers.

Every log line leaves the process whole: the line and its newline in one `write(2)` (structlog's
PrintLogger prints them as two), under one lock per process, so threads never split each other's
lines. Under `--workers` the workers do not write to the shared stderr at all: each sends its lines
over a pipe of its own to the supervisor, which writes them, so lines of two workers cannot mix
even when longer than the 4 KiB a pipe write keeps whole (server/workers.py).

The JSON lines follow structlog's own performance recipe (its docs, "Performance"): orjson renders each
line straight to UTF-8 bytes (several times faster than `json.dumps`, and the decision line is written
on every call, before the answer), the logger takes those bytes as they are, loggers are cached on
first use and levels below the configured one are methods that return None. The timestamp is the
`TimeStamper(fmt="iso", utc=True)` string, its date and time part made once a second.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
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
    with _write_lock:
        written = os.write(fd, line)  # nearly always all of it: the loop is for the rare partial write
        if written < len(line):
            view = memoryview(line)[written:]
            while view:
                view = view[os.write(fd, view) :]


class LineLogger:
    """A structlog logger that hands each rendered line, with its newline, to a sink in one piece.
    It takes bytes (the JSON renderer's) as they are, and encodes text (the console renderer's)."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def msg(self, message: bytes | str) -> None:
        if isinstance(message, str):
            message = message.encode("utf-8", "backslashreplace")
        self._sink(message + b"\n")

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


# Values JSON has no type for render as they did through `json.dumps` with structlog's fallback:
# their `__structlog__()` or their repr. orjson would write datetimes and dataclasses its own way, so
# they are passed through to the fallback too; it still writes enums as their value, UUIDs as their
# string, and NaN and infinities as null (json.dumps wrote NaN, which is not JSON).
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _fallback(obj: object) -> object:
    """What a value JSON has no type for is written as (json.dumps' `default`, and orjson's)."""
    if isinstance(obj, tuple):  # a named tuple: json.dumps writes any tuple as a list
        return list(obj)
    if isinstance(obj, float):  # a float subclass, which orjson does not take as a float
        return float(obj)
    try:
        to_log = getattr(obj, "__structlog__", None)
        if callable(to_log):
            return to_log()
    except Exception:  # a broken __structlog__ falls back to the repr
        pass
    return _safe_repr(obj)


def render_json(logger: object, method: str, event_dict: structlog.typing.EventDict) -> bytes:
    """The last processor: the line as UTF-8 JSON bytes (no newline), whatever its values.

    structlog's `JSONRenderer(serializer=orjson.dumps)`, called directly (its keyword hand-over costs
    as much again as orjson itself). What orjson refuses even through `_fallback` (an integer beyond
    64 bits, a string with lone surrogates, a dict key that is not a plain value, nesting deeper than
    254) is written by `json.dumps` as before; a value that refuses too (a reference cycle, a tuple
    as a key) as its repr: a log call never raises for what it was given."""
    try:
        return orjson.dumps(event_dict, default=_fallback, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        pass
    try:
        text = json.dumps(event_dict, default=_fallback, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps({str(k): _alone(v) for k, v in event_dict.items()}, default=_fallback, ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace")


def _alone(value: object) -> object:
    """The value if json.dumps can write it by itself, else its repr."""
    try:
        json.dumps(value, default=_fallback)
    except (TypeError, ValueError, RecursionError):
        return _safe_repr(value)
    return value


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not take the line with it
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"


class UtcIsoStamper:
    """`TimeStamper(fmt="iso", utc=True)` (same key, same text: `2026-12-02T06:42:57.123456Z`, no
    fraction when the microseconds are 0) at a fraction of its cost: the date and time part is
    formatted once a second, not once a line."""

    def __init__(self, key: str = "timestamp", clock: Callable[[], int] = time.time_ns) -> None:
        self._key = key
        self._clock = clock
        self._second: tuple[int, str] = (-1, "")

    def __call__(
        self, logger: object, method: str, event_dict: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        second, ns = divmod(self._clock(), 1_000_000_000)
        cached, prefix = self._second
        if second != cached:  # threads may both format a new second; either result is right
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        micro = ns // 1000
        event_dict[self._key] = f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"
        return event_dict


def settings(level: str, fmt: str, sink: Sink | None = None) -> dict[str, Any]:
    """The keyword arguments of `structlog.configure` for `configure` (bench_logline.py times them)."""
    renderer: structlog.typing.Processor = render_json if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    return dict(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            UtcIsoStamper(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=LineLoggerFactory(sink),
        cache_logger_on_first_use=True,
    )


def configure(level: str, fmt: str, sink: Sink | None = None) -> None:
    """Log JSON (or console) lines at `level` and above, each whole, to `sink` (default: stderr)."""
    structlog.configure(**settings(level, fmt, sink))
