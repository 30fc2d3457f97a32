"""The log lines as the service writes them (server/logs.py): orjson-rendered JSON bytes, one whole line a
write, the same keys and values as the json.dumps lines they replaced, and no value that can break a log call."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

from liandong.engine.runtime import DurableRuntime
from liandong.server import logs
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import request
from support.rules import copy_demo
from support.servers import channel, running, target

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def _logger(lines: list[bytes], level: str = "info", fmt: str = "json") -> Any:
    """A logger set up as `configure` sets up the service's, writing to `lines`, without touching the global set-up."""
    s = logs.settings(level, fmt, sink=lines.append)
    return structlog.wrap_logger(
        s["logger_factory"](),
        processors=s["processors"],
        wrapper_class=s["wrapper_class"],
        cache_logger_on_first_use=True,
    )


@contextmanager
def configured_json(lines: list[bytes]) -> Iterator[None]:
    """The service's JSON set-up as the global one for a block (loggers not cached, so nothing outlives it)."""
    saved = structlog.get_config()
    structlog.configure(**(logs.settings("info", "json", sink=lines.append) | {"cache_logger_on_first_use": False}))
    try:
        yield
    finally:
        structlog.configure(**saved)


def _round2(event_dict: dict[str, object]) -> object:
    """What the round-2 renderer (json.dumps with structlog's fallback, text encoded by the logger) wrote, parsed."""
    text = structlog.processors.JSONRenderer(ensure_ascii=False)(None, "info", dict(event_dict))
    assert isinstance(text, str)
    return json.loads(text.encode("utf-8", "backslashreplace"))


# -- the decision line ------------------------------------------------------------------------------------------
def test_decision_line_of_a_served_call_is_one_json_line_with_exact_keys_and_chinese_as_utf8(
    tmp_path: Path, runtime: DurableRuntime
) -> None:
    """A Determine answered by the service writes one `decision` line: valid JSON, exactly the decision's keys and values, Chinese as UTF-8 (no \\u escapes), in one piece with its newline."""
    copy_demo(tmp_path)
    lines: list[bytes] = []
    with running(tmp_path, runtime, metrics_listen="", log_facts=True) as svc, channel(target(svc)) as ch:
        with configured_json(lines):
            answer = pb_grpc.ResponseServiceStub(ch).Determine(  # type: ignore[no-untyped-call]
                request("demo", {"deaths": 3, "status": "险情"}, incident_id="川-火-2026-0001"), timeout=10
            )
    decisions = [line for line in lines if b'"event":"decision"' in line]
    assert len(decisions) == 1
    (raw,) = decisions
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert "川-火-2026-0001".encode() in raw and b"\\u" not in raw
    line = json.loads(raw)
    assert list(line) == [
        "decision_id",
        "incident_id",
        "incident_type",
        "ruleset",
        "version",
        "response_level",
        "applies",
        "rules",
        "latency_ms",
        "assumed",
        "facts",
        "event",
        "level",
        "timestamp",
    ]
    assert {k: v for k, v in line.items() if k not in ("latency_ms", "timestamp")} == {
        "decision_id": answer.decision_id,
        "incident_id": "川-火-2026-0001",
        "incident_type": "demo",
        "ruleset": "demo",
        "version": "2024.1",
        "response_level": "III",
        "applies": True,
        "rules": ["grade-III", "breach-or-danger", "not-above-warning"],
        "assumed": ["loss_yuan", "hazmat", "warning_m"],
        "facts": {"deaths": 3, "loss_yuan": 0, "hazmat": False, "status": "danger", "warning_m": 30.5},
        "event": "decision",
        "level": "info",
    }
    assert line["rules"] == [r.id for r in answer.matched_rules]
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    assert ISO_UTC.match(line["timestamp"])


def test_decision_fields_render_as_the_round2_json_dumps_line_did() -> None:
    """The decision line's event dict, Chinese text and facts included, parses to the same keys, order and values from orjson as from the json.dumps renderer it replaced."""
    event = {
        "decision_id": str(uuid.UUID(int=7)),
        "incident_id": "京-119-甲",
        "incident_type": "fire",
        "ruleset": "fire-linkage",
        "version": "2024.1",
        "response_level": "III",
        "applies": True,
        "rules": ["grade-III", "hazmat"],
        "latency_ms": 0.087,
        "assumed": ["hazardous_materials"],
        "facts": {"deaths": 3, "direct_loss_yuan": 1e7, "note": "张三", "nested": {"list": [1, 2.5, None]}},
        "event": "decision",
        "level": "info",
        "timestamp": "2026-12-02T06:42:57.123456Z",
    }
    raw = logs.render_json(None, "info", dict(event))
    assert json.loads(raw) == _round2(event) == event
    assert list(json.loads(raw)) == list(event)
    assert "张三".encode() in raw


# -- values JSON has no type for -----------------------------------------------------------------------------------
class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    n: int


Pair = collections.namedtuple("Pair", "a b")


class Ratio(float):
    pass


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Logged:
    def __structlog__(self) -> object:
        return {"as": "logged"}


SAME_AS_ROUND2: dict[str, object] = {
    "a_set": {3},
    "a_frozenset": frozenset({"x"}),
    "a_path": Path("/srv/规则/fire.yaml"),
    "a_datetime": dt.datetime(2026, 12, 2, 6, 42, 57, tzinfo=dt.UTC),
    "a_date": dt.date(2026, 12, 2),
    "a_dataclass": Frozen("联动", 2),
    "a_tuple": (1, "二"),
    "a_namedtuple": Pair(1, 2),
    "a_float_subclass": Ratio(0.5),
    "a_decimal": decimal.Decimal("1.10"),
    "some_bytes": b"\x00\xff",
    "int_keys": {1: "one", None: "none", 2.5: "x"},
    "huge_int": 2**80,
    "lone_surrogate": "bad \udc80 byte",
    "an_exception": ValueError("坏"),
    "with_structlog_method": Logged(),
}


@pytest.mark.parametrize("key", sorted(SAME_AS_ROUND2))
def test_values_json_has_no_type_for_render_as_before(key: str) -> None:
    """Each value json.dumps wrote through structlog's fallback (repr or __structlog__, lists for tuples) parses to the same value from the new renderer."""
    event = {key: SAME_AS_ROUND2[key], "event": "odd"}
    assert json.loads(logs.render_json(None, "info", dict(event))) == _round2(event)


def test_values_orjson_writes_its_own_way_are_readable_json() -> None:
    """Enums are written as their value, UUIDs as their string, NaN and infinity as null (json.dumps wrote repr and the non-JSON NaN)."""
    raw = logs.render_json(
        None, "info", {"colour": Colour.RED, "id": uuid.UUID(int=1), "nan": float("nan"), "inf": float("inf")}
    )
    assert json.loads(raw) == {"colour": "red", "id": "00000000-0000-0000-0000-000000000001", "nan": None, "inf": None}


def test_values_no_json_library_can_write_still_give_a_line() -> None:
    """A reference cycle, a tuple-keyed dict and a broken repr neither raise nor lose the line: the others keep their values, these are written as their repr, or a note when there is none."""
    cycle: list[object] = []
    cycle.append(cycle)
    event = {"cycle": cycle, "pairs": {(1, 2): "x"}, "broken": BrokenRepr(), "event": "odd", "n": 1}
    line = json.loads(logs.render_json(None, "info", event))
    assert line == {
        "cycle": "[[...]]",
        "pairs": "{(1, 2): 'x'}",
        "broken": "<unrepresentable BrokenRepr: RuntimeError>",
        "event": "odd",
        "n": 1,
    }


def test_a_log_call_with_every_odd_value_writes_one_whole_json_line() -> None:
    """Logging a set, a Path, a datetime, a frozen dataclass and the rest in one call through the full chain writes exactly one valid JSON line."""
    lines: list[bytes] = []
    log = _logger(lines)
    log.info("odd", **SAME_AS_ROUND2, colour=Colour.RED, broken=BrokenRepr())
    (raw,) = lines
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    line = json.loads(raw)
    assert line["event"] == "odd" and line["level"] == "info" and line["a_path"] == "PosixPath('/srv/规则/fire.yaml')"
    assert line["a_dataclass"] == "Frozen(name='联动', n=2)" and line["a_set"] == "{3}"


def test_exception_lines_carry_the_formatted_traceback() -> None:
    """log.exception writes the traceback under `exception` and the level as error, as format_exc_info did."""
    lines: list[bytes] = []
    log = _logger(lines)
    try:
        raise LookupError("没有这条规则")
    except LookupError:
        log.exception("internal_error", method="Determine")
    (line,) = [json.loads(raw) for raw in lines]
    assert line["level"] == "error" and line["method"] == "Determine"
    assert line["exception"].startswith("Traceback") and "LookupError: 没有这条规则" in line["exception"]


# -- timestamp, levels, console ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ns",
    [1_796_193_777_123_456_789, 1_796_193_777_000_000_000, 1_796_193_777_000_999_999, 951_782_400_000_001_000],
    ids=["fraction", "whole-second", "under-a-microsecond", "leap-day"],
)
def test_timestamp_is_the_text_timestamper_wrote(ns: int) -> None:
    """The stamper writes what TimeStamper(fmt='iso', utc=True) writes for the same instant, the fraction left out when it is zero microseconds."""
    second, rest = divmod(ns, 1_000_000_000)
    instant = dt.datetime.fromtimestamp(second, tz=dt.UTC).replace(microsecond=rest // 1000)
    stamped = logs.UtcIsoStamper(clock=lambda: ns)(None, "info", {})
    assert stamped == {"timestamp": instant.isoformat().replace("+00:00", "Z")}


def test_timestamp_follows_the_clock_across_seconds() -> None:
    """A new second gets its own date and time, not the one formatted for the second before."""
    now = [1_796_193_777_999_999_000]
    stamp = logs.UtcIsoStamper(clock=lambda: now[0])
    first = stamp(None, "info", {})["timestamp"]
    now[0] += 1_000
    second = stamp(None, "info", {})["timestamp"]
    assert (first, second) == ("2026-12-02T06:42:57.999999Z", "2026-12-02T06:42:58Z")


def test_the_live_timestamp_agrees_with_timestampers() -> None:
    """The stamper's text has TimeStamper's form and names the same moment within a second."""
    ours = logs.UtcIsoStamper()(None, "info", {})["timestamp"]
    theirs = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    assert ISO_UTC.match(ours) and ISO_UTC.match(theirs)
    gap = dt.datetime.fromisoformat(theirs) - dt.datetime.fromisoformat(ours)
    assert dt.timedelta(0) <= gap < dt.timedelta(seconds=1)


def test_levels_below_the_configured_one_write_nothing() -> None:
    """At level warning, info and debug lines are dropped and warning lines written."""
    lines: list[bytes] = []
    log = _logger(lines, level="warning")
    log.debug("d")
    log.info("i")
    log.warning("w", n=1)
    assert [json.loads(raw)["event"] for raw in lines] == ["w"]


def test_console_format_writes_one_text_line_with_chinese() -> None:
    """--log-format console still writes readable key=value text, one line a write, Chinese as UTF-8."""
    lines: list[bytes] = []
    log = _logger(lines, fmt="console")
    log.info("decision", incident_id="川-火-1", rules=["grade-III"])
    (raw,) = lines
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    text = raw.decode("utf-8")
    assert "decision" in text and "incident_id=川-火-1" in text and "[info" in text


# -- the write --------------------------------------------------------------------------------------------------
def test_a_partial_write_is_finished_before_the_lock_is_released(monkeypatch: pytest.MonkeyPatch) -> None:
    """When write(2) takes only part of a line, the rest follows in order and the line arrives whole."""
    read_fd, write_fd = os.pipe()
    real_write = os.write
    calls: list[int] = []

    def dribble(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    line = ("联动 " * 10).encode() + b"\n"
    monkeypatch.setattr(logs.os, "write", dribble)
    try:
        logs.write_line(line, write_fd)
    finally:
        monkeypatch.undo()
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        assert reader.read() == line
    assert len(calls) == -(-len(line) // 7)
