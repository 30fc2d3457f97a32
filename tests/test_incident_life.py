"""An incident's life as pure functions (incidents/life.py) over real determinations of the bundled
township plan: the override rule, obligations' clocks from engine/deadlines.py, dropped duties."""

from __future__ import annotations

import datetime as dt

import pytest

from liandong.engine import deadlines
from liandong.engine.result import Determination, Incident, ObligationResult
from liandong.engine.runtime import DurableRuntime
from liandong.errors import IncidentClosed, IncidentRequestInvalid
from liandong.incidents import life
from liandong.incidents import model as m
from liandong.incidents.model import Change, LevelSnap, Record
from liandong.rulebook import RuleBook
from support.incidents import RULES, T0

GRACE = dt.timedelta(minutes=5)
INSTANT = dt.timedelta(microseconds=1)  # 以内 counts the due instant itself as in time
CITY = LevelSnap("city", "市级", 4)
LOCAL = LevelSnap("local", "属地", 1)


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(RULES, runtime)


def _det(book: RuleBook, **facts: object) -> Determination:
    return book.determine(Incident("mass_incident", facts, occurred_at=T0), "township-mass-incident", "2024.1")


def _report(
    book: RuleBook,
    before: Record | None,
    at: dt.datetime,
    starts: dict[str, dt.datetime] | None = None,
    **patch: object,
) -> Change:
    merged = life.merge_facts(before.facts if before else {}, patch)
    return life.report(
        before,
        _det(book, **merged),
        incident_id="i",
        incident_type="mass_incident",
        facts=merged,
        reported_at=at,
        start_events=starts or {},
        caller="test",
        reporter="",
        at_once_grace=GRACE,
        now=at,
    )


def test_merge_facts_null_removes() -> None:
    """A report's facts go over the facts so far; a null value removes that fact."""
    assert life.merge_facts({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}


def test_override_holds_until_the_rules_level_changes(book: RuleBook) -> None:
    """An override up holds over a report that leaves the rules' level alone, and gives way when the rules' level changes."""
    opened = _report(book, None, T0, participants=80, local_forces_can_control=False).record
    raised = life.set_command_level(opened, CITY, by="总指挥", reason="", caller="c", at=T0, now=T0).record
    assert raised.command_level == CITY and raised.rules_level is not None and raised.rules_level.code == "township"
    same = _report(book, raised, T0 + dt.timedelta(minutes=1), participants=90)
    assert same.record.command_level == CITY and not same.events  # rules still 镇级: the override holds
    changed = _report(book, same.record, T0 + dt.timedelta(minutes=2), participants=150)
    assert changed.record.override is None and changed.record.command_level.code == "county"  # type: ignore[union-attr]
    assert life.direction(changed.previous_command, changed.record.command_level) == "lowered"


def test_lowering_below_the_rules_needs_a_reason_and_a_rise_always_escalates(book: RuleBook) -> None:
    """Lowering below the rules' level without a reason is refused; with one it holds until the rules rise, which escalates."""
    opened = _report(book, None, T0, participants=150, local_forces_can_control=False).record
    with pytest.raises(IncidentRequestInvalid):
        life.set_command_level(opened, LOCAL, by="总指挥", reason=" ", caller="c", at=T0, now=T0)
    lowered = life.set_command_level(opened, LOCAL, by="总指挥", reason="已控制", caller="c", at=T0, now=T0)
    assert [e.body["changed_by"] for e in lowered.events] == ["override"]
    risen = _report(book, lowered.record, T0 + dt.timedelta(hours=1), participants=600)
    assert risen.record.command_level.code == "city"  # type: ignore[union-attr]
    assert [(e.body["to_level"]["code"], e.body["changed_by"]) for e in risen.events if e.kind == m.LEVEL_CHANGED] == [
        ("city", "rules")
    ]


def test_clock_starts_at_the_first_report_that_requires_it(book: RuleBook) -> None:
    """A 20-minute duty is due 20 minutes after the neighbour's request (三、2), whatever later reports come, and late only after that instant (以内 includes it); an at-once duty is overdue after the grace."""
    opened = _report(book, None, T0, {"request_received": T0}, participants=80, local_forces_can_control=False)
    reply = opened.record.obligation("reply_20min")
    assert reply is not None and reply.due_at == T0 + dt.timedelta(minutes=20)
    assert reply.overdue_at == reply.due_at + INSTANT
    first = opened.record.obligation("village_first_response")
    assert first is not None and first.due_at == T0 and first.overdue_at == T0 + GRACE
    later = _report(book, opened.record, T0 + dt.timedelta(minutes=10), participants=90).record
    assert later.obligation("reply_20min") == reply
    prompt = [o for o in later.obligations if o.state == m.PROMPTLY]
    assert prompt and all(o.due_at is None for o in prompt)
    assert later.clocks()["reply_20min"] == T0 + dt.timedelta(minutes=20) + INSTANT


def test_a_duty_no_longer_required_while_pending_is_dropped(book: RuleBook) -> None:
    """Going from 县级 to 市级 drops the county-only duties still pending, each with an obligation_dropped event."""
    county = _report(book, None, T0, participants=150, local_forces_can_control=False).record
    city = _report(book, county, T0 + dt.timedelta(minutes=1), participants=600)
    dropped = {e.body["obligation"]["id"] for e in city.events if e.kind == m.OBLIGATION_DROPPED}
    assert dropped == set(city.obligations_dropped) == {"site_preparation", "ask_county"}
    assert city.record.obligation("ask_county") is None


def test_overdue_once_and_never_after_close(book: RuleBook) -> None:
    """A clock fires once (a second firing of the same row is stale); after close, nothing fires."""
    opened = _report(book, None, T0, {"request_received": T0}, participants=80, local_forces_can_control=False).record
    due = T0 + dt.timedelta(minutes=20) + INSTANT  # the clock's time: the first late instant
    now = due + dt.timedelta(seconds=30)
    fired = life.overdue(opened, "reply_20min", due, now=now, late_after=dt.timedelta(seconds=5), current=None)
    assert [e.kind for e in fired.events] == [m.OBLIGATION_OVERDUE] and fired.events[0].body["late"] is True
    again = life.overdue(fired.record, "reply_20min", due, now=now, late_after=dt.timedelta(seconds=5), current=None)
    assert not again.changed
    closed = life.close(opened, by="x", reason="", caller="c", at=T0, now=T0).record
    assert closed.clocks() == {}
    assert not life.overdue(closed, "reply_20min", due, now=now, late_after=dt.timedelta(), current=None).changed
    with pytest.raises(IncidentClosed):
        _report(book, closed, now, participants=1)


def test_new_kinds_of_due_time_need_no_new_mechanism(book: RuleBook, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that starts at another event waits for it; a recurring duty (next_due) falls due again after each firing and each acknowledgement."""
    every_hour = dt.timedelta(hours=1)

    def start_event(o: ObligationResult) -> str:
        return "request_received" if o.id == "reply_20min" else deadlines.INCIDENT_REPORTED

    def next_due(o: ObligationResult, previous: dt.datetime) -> dt.datetime | None:
        return previous + every_hour if o.id == "reply_20min" else None

    monkeypatch.setattr(deadlines, "start_event", start_event)
    monkeypatch.setattr(deadlines, "next_due", next_due)
    opened = _report(book, None, T0, participants=80, local_forces_can_control=False).record
    waiting = opened.obligation("reply_20min")
    assert waiting is not None and waiting.state == m.PENDING and waiting.due_at is None
    asked = T0 + dt.timedelta(minutes=7)
    started = _report(book, opened, T0 + dt.timedelta(minutes=8), {"request_received": asked}, participants=85)
    reply = started.record.obligation("reply_20min")
    assert reply is not None and reply.due_at == asked + dt.timedelta(minutes=20)
    assert [e.body["obligation"]["id"] for e in started.events if e.kind == m.OBLIGATION_DUE] == ["reply_20min"]
    current = next(
        o for o in _det(book, participants=85, local_forces_can_control=False).obligations if o.id == "reply_20min"
    )
    fired = life.overdue(
        started.record,
        "reply_20min",
        reply.overdue_at,
        now=reply.overdue_at,
        late_after=dt.timedelta(seconds=5),
        current=current,
    )
    assert [e.kind for e in fired.events] == [m.OBLIGATION_OVERDUE, m.OBLIGATION_DUE]
    assert fired.record.clocks()["reply_20min"] == reply.due_at + every_hour + INSTANT
    acked = life.acknowledge(
        fired.record,
        "reply_20min",
        unit=reply.who[0].id,
        note="",
        caller="c",
        at=reply.due_at,
        now=reply.due_at,
        current=current,
    )
    assert acked.record.clocks()["reply_20min"] == reply.due_at + 2 * every_hour + INSTANT


def test_a_due_time_past_the_known_calendar_is_kept_pending_with_the_reason(book: RuleBook) -> None:
    """A working-day duty whose clock starts in a year the official calendar does not know stays pending with no guessed due time, the reason in its wording, and the report is kept."""
    complaint = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)
    det = book.determine(
        Incident("medical_dispute", {"multi_department": True}, occurred_at=complaint), "medical-dispute", "2024.1"
    )
    change = life.report(
        None,
        det,
        incident_id="m",
        incident_type="medical_dispute",
        facts={"multi_department": True},
        reported_at=complaint,
        start_events={"complaint_received": complaint},
        caller="test",
        reporter="",
        at_once_grace=GRACE,
        now=complaint,
    )
    feedback = change.record.obligation("feedback_10wd")
    assert feedback is not None and feedback.state == m.PENDING and feedback.due_at is None
    assert "due time unknown" in feedback.within and "2027" in feedback.within
