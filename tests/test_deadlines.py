"""Due times from an obligation's timing and the moments its clock can start."""

from __future__ import annotations

import datetime as dt

from liandong.document.model import Citation, Timing
from liandong.engine import deadlines
from liandong.engine.result import ObligationResult

START = dt.datetime(2026, 9, 30, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def _obligation(timing: Timing, within_seconds: int | None = None) -> ObligationResult:
    return ObligationResult("o", "text", (), within_seconds, "", Citation("plan", "一"), timing=timing)


def test_a_fixed_limit_falls_due_that_long_after_the_report() -> None:
    """`within: 20m` falls due 20 minutes after the report that first required it."""
    due = deadlines.first_due(_obligation(Timing.WITHIN, 1200), {deadlines.INCIDENT_REPORTED: START})
    assert due == START + dt.timedelta(minutes=20)


def test_at_once_falls_due_at_the_start() -> None:
    """An obligation due at once falls due the moment its clock starts."""
    assert deadlines.first_due(_obligation(Timing.AT_ONCE, 0), {deadlines.INCIDENT_REPORTED: START}) == START


def test_promptly_and_no_time_never_fall_due() -> None:
    """及时 (promptly) and an obligation with no time stated have no due time, and never recur."""
    for timing in (Timing.PROMPTLY, Timing.NONE):
        ob = _obligation(timing)
        assert deadlines.first_due(ob, {deadlines.INCIDENT_REPORTED: START}) is None
        assert deadlines.next_due(ob, START) is None


def test_no_due_time_before_the_clock_starts() -> None:
    """Without the moment of its start event, an obligation has no due time yet."""
    assert deadlines.first_due(_obligation(Timing.WITHIN, 1200), {}) is None
