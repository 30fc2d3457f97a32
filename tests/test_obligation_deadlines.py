"""Obligation timing keys (issue 14): each kind of deadline, its validation, and its due times."""

from __future__ import annotations

import datetime as dt

import pytest

from liandong.document.load import parse_document
from liandong.document.model import Obligation
from liandong.engine import deadlines, workdays
from liandong.engine.result import ObligationResult
from liandong.errors import DeadlineUnknown, RuleDocumentInvalid
from support.data import load_cases

CASES = load_cases("obligation_deadlines.yaml")
INVALID = load_cases("invalid_deadlines.yaml")

TEMPLATE = """ruleset: timing
version: "1"
title: 时限
source: {{plan: 测试预案, location: tests}}
effective_from: 2024-01-01
incident_types: [probe]
boundary: {boundary}
inputs:
  x: {{type: integer, min: 0, default: 0, meaning: 规模}}
units:
  - {{id: office, name: 办公室, duties: 报告, citation: 一}}
obligations:
  - {{id: x, text: 报告, who: [office], citation: 一, {keys}}}
rules:
  - {{id: all, title: 全部, citation: 一, when: {{all: []}}, then: {{obligations: [x]}}}}
"""


def _obligation(keys: str, boundary: str = "civil-code") -> Obligation:
    doc = parse_document(TEMPLATE.format(boundary=boundary, keys=keys).encode("utf-8"), "timing.yaml")
    return doc.obligations[0]


def _result(o: Obligation) -> ObligationResult:
    return ObligationResult(
        o.id, o.text, (), o.within_seconds, o.within_text, o.citation, o.citations, o.timing, o.deadline
    )


def _flow(keys: object) -> str:
    assert isinstance(keys, dict)
    return ", ".join(f"{k}: {v!r}" if k == "by" else f"{k}: {v}" for k, v in keys.items()).replace("'", '"')


def _moment(text: object) -> dt.datetime:
    assert isinstance(text, str)
    return dt.datetime.fromisoformat(text)


@pytest.mark.parametrize("case", CASES, ids=[str(c["note"]) for c in CASES])
def test_due_times(case: dict[str, object]) -> None:
    """Each timing kind falls due where the plan's words put it, and an act meets it as the boundary reads."""
    ob = _result(_obligation(_flow(case["obligation"]), str(case.get("boundary", "civil-code"))))
    starts_raw = case["starts"]
    assert isinstance(starts_raw, dict)
    starts = {event: _moment(at) for event, at in starts_raw.items()}
    if "want_error_code" in case:
        with pytest.raises(DeadlineUnknown) as caught:
            deadlines.first_due(ob, starts)
        assert caught.value.code == case["want_error_code"]
        assert caught.value.known_until == workdays.known_years()[1]
        return
    first = deadlines.first_due(ob, starts)
    want = case["want_first"]
    assert first == (None if want is None else _moment(want))
    if "want_next" in case:
        wanted = case["want_next"]
        assert isinstance(wanted, list)
        got: list[dt.datetime] = []
        previous = first
        while previous is not None and len(got) < len(wanted) + 1:
            previous = deadlines.next_due(ob, previous)
            if previous is not None:
                got.append(previous)
        assert got[: len(wanted) + 1] == [_moment(w) for w in wanted] + (got[len(wanted) : len(wanted) + 1])
        if not wanted:
            assert got == []
    if "want_aim" in case:
        assert deadlines.aimed_due(ob, starts) == _moment(case["want_aim"])
    if "in_time" in case:
        assert first is not None
        moments = case["in_time"]
        assert isinstance(moments, dict)
        for at, expected in moments.items():
            assert deadlines.in_time(ob, first, _moment(at)) is expected, at
    if "want_wording" in case:
        assert ob.deadline.wording == case["want_wording"]


@pytest.mark.parametrize("case", INVALID, ids=[str(c["note"]) for c in INVALID])
def test_invalid_timing(case: dict[str, str]) -> None:
    """A timing key the format cannot read is refused with a located problem naming the obligation."""
    with pytest.raises(RuleDocumentInvalid) as caught:
        _obligation(case["obligation"])
    matching = [p for p in caught.value.problems if case["want"] in p.message]
    assert matching, [str(p) for p in caught.value.problems]
    problem = matching[0]
    assert (problem.path, problem.line) == ("timing.yaml", 13), str(problem)
    assert problem.column > 1
    if "suggestion" in case:
        assert problem.suggestion == case["suggestion"]


def test_start_event_is_read_from_the_document() -> None:
    """`starts` names the clock's event, and an obligation without it starts at the incident report."""
    assert deadlines.start_event(_result(_obligation("within: 10wd, starts: complaint_received"))) == (
        "complaint_received"
    )
    assert deadlines.start_event(_result(_obligation("within: 1h"))) == deadlines.INCIDENT_REPORTED


def test_a_naive_start_is_refused() -> None:
    """A start without a timezone is a caller's error, not a Beijing or UTC guess."""
    ob = _result(_obligation("within: same_day"))
    with pytest.raises(ValueError, match="timezone-aware"):
        deadlines.first_due(ob, {deadlines.INCIDENT_REPORTED: dt.datetime(2026, 3, 10, 9, 0)})


def test_the_calendar_knows_the_2026_holidays_and_working_weekends() -> None:
    """The maintained calendar has 2026: National Day off, Saturday 10-10 and Sunday 09-20 worked."""
    assert not workdays.is_working_day(dt.date(2026, 10, 5))
    assert workdays.is_working_day(dt.date(2026, 10, 10))
    assert workdays.is_working_day(dt.date(2026, 9, 20))
    assert not workdays.is_working_day(dt.date(2026, 10, 11))
