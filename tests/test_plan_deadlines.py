"""The time requirements of the three plans of issue 14, as the plans word them, at their boundaries:
working days across National Day 2026 with its 调休 Saturday, the daily 08:00, exactly 24 hours after a
批示, half an hour, and clocks that start at a complaint or a 批示 rather than at the report."""

from __future__ import annotations

import datetime as dt

import pytest

from liandong.engine import deadlines
from liandong.engine.result import Incident, ObligationResult
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from support.data import BUNDLED

BEIJING = dt.timezone(dt.timedelta(hours=8))
SECOND = dt.timedelta(seconds=1)


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(BUNDLED, runtime)


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def _obligation(book: RuleBook, incident_type: str, facts: dict[str, object], oid: str) -> ObligationResult:
    det = book.determine(Incident(type=incident_type, facts=facts))
    (found,) = [o for o in det.obligations if o.id == oid]
    return found


def _edges(o: ObligationResult, due: dt.datetime) -> tuple[bool, bool, bool]:
    """In time one second before the due time, at it, and one second after."""
    return (
        deadlines.in_time(o, due, due - SECOND),
        deadlines.in_time(o, due, due),
        deadlines.in_time(o, due, due + SECOND),
    )


# ---- medical-dispute: 003 第四篇 五, both from the complaint ----


def test_ten_working_days_from_a_complaint_cross_national_day(book: RuleBook) -> None:
    """A complaint on 2026-09-30: 10个工作日内 skips 10-01..10-07, counts the 调休 Saturday 10-10, and ends at 24:00 on 10-20, that instant included."""
    o = _obligation(book, "medical_dispute", {"multi_department": True}, "feedback_10wd")
    assert deadlines.start_event(o) == "complaint_received"
    due = deadlines.first_due(
        o, {"incident_reported": _at("2026-09-29T09:00"), "complaint_received": _at("2026-09-30T16:30")}
    )
    assert due == _at("2026-10-21T00:00")
    assert _edges(o, due) == (True, True, False)
    assert o.deadline.wording == "接到投诉后10个工作日内"


def test_ten_working_days_count_the_adjusted_saturday(book: RuleBook) -> None:
    """A complaint on Friday 2026-10-09: the 调休 Saturday 10-10 is the first working day, so the tenth is Thursday 10-22."""
    o = _obligation(book, "medical_dispute", {"multi_department": True}, "feedback_10wd")
    assert deadlines.first_due(o, {"complaint_received": _at("2026-10-09T10:00")}) == _at("2026-10-23T00:00")


def test_five_days_from_a_complaint_move_past_the_holiday(book: RuleBook) -> None:
    """A complaint on 2026-09-30: 5日内 would end on 10-05, a holiday, so it ends at 24:00 on 10-08, the next working day."""
    o = _obligation(book, "medical_dispute", {"complex": True}, "feedback_5d")
    due = deadlines.first_due(o, {"complaint_received": _at("2026-09-30T16:30")})
    assert due == _at("2026-10-09T00:00")
    assert _edges(o, due) == (True, True, False)


def test_five_days_on_ordinary_days(book: RuleBook) -> None:
    """The complaint's day is not counted: from Thursday 2026-03-05 the 5th day is Tuesday 03-10; from Monday 03-02 it is Saturday 03-07, moved to Monday 03-09."""
    o = _obligation(book, "medical_dispute", {"complex": True}, "feedback_5d")
    assert deadlines.first_due(o, {"complaint_received": _at("2026-03-05T10:00")}) == _at("2026-03-11T00:00")
    assert deadlines.first_due(o, {"complaint_received": _at("2026-03-02T10:00")}) == _at("2026-03-10T00:00")


def test_feedback_clock_waits_for_the_complaint(book: RuleBook) -> None:
    """Until a complaint is received, neither feedback limit falls due, whenever the incident was reported."""
    for facts, oid in (({"complex": True}, "feedback_5d"), ({"multi_department": True}, "feedback_10wd")):
        o = _obligation(book, "medical_dispute", facts, oid)
        assert deadlines.first_due(o, {"incident_reported": _at("2026-09-30T08:00")}) is None


def test_reporting_chain_is_due_at_the_report(book: RuleBook) -> None:
    """责任人应立即报告 and 相关科室应立即派人 are due at the report itself; 及时查明 never falls due."""
    start = {"incident_reported": _at("2026-05-01T03:20")}
    head = _obligation(book, "medical_dispute", {"cause": "medical_fault"}, "report_to_head")
    treat = _obligation(book, "medical_dispute", {"cause": "medical_fault"}, "dispatch_and_treat")
    check = _obligation(book, "medical_dispute", {"cause": "fees_pricing", "resolvable_on_spot": True}, "fee_check")
    assert deadlines.first_due(head, start) == start["incident_reported"]
    assert deadlines.first_due(treat, start) == start["incident_reported"]
    assert deadlines.first_due(check, start) is None


# ---- epidemic-joint-prevention: 004 范文3 三(二) ----


def test_daily_report_before_eight_includes_eight_under_civil_code(book: RuleBook) -> None:
    """每日8:00点前: the first 08:00 after the report, 08:00 itself in time (civil-code), 08:00:01 late, then every day."""
    o = _obligation(book, "epidemic", {}, "daily_group_report")
    due = deadlines.first_due(o, {"incident_reported": _at("2026-02-01T07:59")})
    assert due == _at("2026-02-01T08:00")
    assert _edges(o, due) == (True, True, False)
    assert deadlines.next_due(o, due) == _at("2026-02-02T08:00")
    assert o.deadline.wording == "每日8:00前,直至事件结束"


def test_epidemic_reported_at_eight_owes_its_first_report_next_morning(book: RuleBook) -> None:
    """An epidemic reported at 08:00 exactly, or just after, owes its first written report at 08:00 the next day."""
    o = _obligation(book, "epidemic", {}, "daily_group_report")
    assert deadlines.first_due(o, {"incident_reported": _at("2026-02-01T08:00")}) == _at("2026-02-02T08:00")
    assert deadlines.first_due(o, {"incident_reported": _at("2026-02-01T08:01")}) == _at("2026-02-02T08:00")


def test_daily_summary_recurs_but_is_never_due(book: RuleBook) -> None:
    """每日汇总后报 names no hour: it recurs daily and is never shown as due."""
    o = _obligation(book, "epidemic", {}, "daily_summary")
    assert deadlines.first_due(o, {"incident_reported": _at("2026-02-01T15:00")}) is None
    assert o.deadline.repeat.value == "daily"


def test_important_news_any_time_is_never_a_deadline(book: RuleBook) -> None:
    """重要情况应随时通报 is promptly: no number, never due."""
    o = _obligation(book, "epidemic", {}, "notify_important")
    assert deadlines.first_due(o, {"incident_reported": _at("2026-02-01T15:00")}) is None


# ---- information-reporting: 001 篇3 三(二) ----


def test_instruction_answered_within_exactly_twenty_four_hours(book: RuleBook) -> None:
    """最迟不得超过24小时 from the 批示: exactly 24 hours is in time (超过 excludes), a second more is late; 当天 is the aim."""
    o = _obligation(book, "information_report", {"leader_instruction_received": True}, "instruction_feedback")
    starts = {"incident_reported": _at("2026-06-01T09:00"), "instruction_received": _at("2026-06-01T15:40")}
    due = deadlines.first_due(o, starts)
    assert due == _at("2026-06-02T15:40")
    assert _edges(o, due) == (True, True, False)
    assert deadlines.aimed_due(o, starts) == _at("2026-06-02T00:00")
    assert o.deadline.wording == "接到批示后当天,最迟不得超过24小时"


def test_instruction_clock_waits_for_the_instruction(book: RuleBook) -> None:
    """Without a 批示 received, the 落实情况 report does not fall due, however long since the report."""
    o = _obligation(book, "information_report", {"leader_instruction_received": True}, "instruction_feedback")
    assert deadlines.first_due(o, {"incident_reported": _at("2026-06-01T09:00")}) is None


def test_important_information_within_half_an_hour(book: RuleBook) -> None:
    """半小时内: due 30 minutes after the report, the 30th minute included."""
    o = _obligation(book, "information_report", {"important_urgent": True}, "important_info_30min")
    due = deadlines.first_due(o, {"incident_reported": _at("2026-06-01T09:00")})
    assert due == _at("2026-06-01T09:30")
    assert _edges(o, due) == (True, True, False)


def test_major_events_are_reported_at_once(book: RuleBook) -> None:
    """即发即报 and 第一时间电话报告 are due at the report itself; 及时回应领导关切 never falls due."""
    start = {"incident_reported": _at("2026-06-01T09:00")}
    facts = {"severity": "major", "complex": True}
    for oid in ("major_at_once", "phone_at_once"):
        assert deadlines.first_due(_obligation(book, "information_report", facts, oid), start) == _at(
            "2026-06-01T09:00"
        )
    assert deadlines.first_due(_obligation(book, "information_report", facts, "dynamic_tracking"), start) is None
