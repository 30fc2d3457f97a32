"""An incident's life as pure functions: a report merged in, an override, an acknowledgement, a
clock that fires, the close. Each takes the record as it stands and returns a Change; the store
writes it in one transaction. No I/O, no clock of its own: times come in as arguments.

The override rule (plan 000 第五篇 四、2: 总指挥和现场指挥可以临时提升或下降指挥级别):
- the command level is the rules' level unless a commander's override holds;
- an override holds until the rules' level next changes, in either direction: then the new rules'
  level is in force again, so a rise in the rules' level always escalates, whatever was set before;
- lowering below the rules' level needs a reason, kept on record.

Clocks: an obligation's clock starts at the report that first requires it (or at the start event
the plan names, once a caller reports it); engine/deadlines.py alone turns its timing into due
times. An obligation due at once is due at its start, and becomes overdue when it is still not
acknowledged `at_once_grace` later (the plan's 立即 gives no number; the grace is configuration).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from liandong.engine import deadlines
from liandong.engine.result import Determination, LevelResult, ObligationResult
from liandong.errors import DeadlineUnknown, IncidentClosed, IncidentRequestInvalid
from liandong.incidents import model as m
from liandong.incidents.model import Change, Event, HistoryEntry, LevelSnap, Record, Ref, TrackedObligation


def merge_facts(facts: Mapping[str, object], patch: Mapping[str, object]) -> dict[str, object]:
    """The facts so far with the patch over them; a None (JSON null) value removes that fact."""
    merged = dict(facts)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def snap(level: LevelResult | None) -> LevelSnap | None:
    return None if level is None else LevelSnap(level.code, level.name, level.rank)


def _rank(level: LevelSnap | None) -> int:
    return -1 if level is None else level.rank


def direction(before: LevelSnap | None, after: LevelSnap | None) -> str:
    """escalated, lowered or unchanged: of the command level, by rank."""
    if (before.code if before else None) == (after.code if after else None):
        return "unchanged"
    return "escalated" if _rank(after) > _rank(before) else "lowered"


def _within_text(o: ObligationResult) -> str:
    return o.within_text or o.timing.value


def _schedule(
    o: ObligationResult, starts: Mapping[str, dt.datetime], at_once_grace: dt.timedelta
) -> tuple[str, dt.datetime | None, dt.datetime | None]:
    """(state, due_at, overdue_at) of a newly required obligation, from deadlines.first_due."""
    due = deadlines.first_due(o, starts)
    if due is None:
        started = deadlines.start_event(o) in starts
        return (m.PROMPTLY if started else m.PENDING), None, None
    start = starts.get(deadlines.start_event(o))
    overdue = due + at_once_grace if start is not None and due == start else _late_from(o, due)
    return m.PENDING, due, overdue


def _late_from(o: ObligationResult, due: dt.datetime) -> dt.datetime:
    """The first late instant: the due instant itself, or just after it when the plan's words count
    an act at that instant as in time (以内, 不得超过, a day's 24:00: deadlines.in_time)."""
    return due + _INSTANT if deadlines.in_time(o, due, due) else due


_INSTANT = dt.timedelta(microseconds=1)  # the stores keep microseconds: the next instant after a due time


def _tracked(
    o: ObligationResult, reported_at: dt.datetime, starts: Mapping[str, dt.datetime], grace: dt.timedelta
) -> TrackedObligation:
    within = _within_text(o)
    try:
        state, due, overdue = _schedule(o, starts, grace)
    except DeadlineUnknown as exc:
        # The working-day calendar does not know the year yet: the report is kept and the duty stays
        # pending, with the reason in its wording instead of a guessed due time.
        state, due, overdue = m.PENDING, None, None
        within = f"{within} (due time unknown: {exc.message})"
    return TrackedObligation(
        id=o.id,
        text=o.text,
        who=tuple(Ref(u.id, u.name) for u in o.who),
        citation=(o.citation.document, o.citation.clause),
        within=within,
        state=state,
        required_since=reported_at,
        due_at=due,
        overdue_at=overdue,
    )


def _units(det: Determination) -> tuple[Ref, ...]:
    seen: dict[str, Ref] = {}
    for u in ((det.lead,) if det.lead else ()) + det.units:
        seen.setdefault(u.id, Ref(u.id, u.name))
    return tuple(seen.values())


def _obligation_body(o: TrackedObligation) -> dict[str, object]:
    return {"obligation": o.json()}


def report(
    before: Record | None,
    det: Determination,
    *,
    incident_id: str,
    incident_type: str,
    facts: Mapping[str, object],
    reported_at: dt.datetime,
    start_events: Mapping[str, dt.datetime],
    caller: str,
    reporter: str,
    at_once_grace: dt.timedelta,
    now: dt.datetime,
) -> Change:
    """The record after a report whose merged facts the rules judged as `det`."""
    if before is not None and before.status != m.OPEN:
        raise IncidentClosed(f"incident '{incident_id}' is closed; it takes no further reports", field="incident_id")
    rev = 1 if before is None else before.rev + 1
    starts = dict(before.starts) if before else {}
    for name, moment in start_events.items():
        starts.setdefault(name, moment)
    events: list[Event] = []

    def event(kind: str, **body: object) -> None:
        events.append(Event(kind, incident_id, now, rev, {"caller": caller, **body}))

    if before is None:
        event(m.OPENED, type=incident_type, ruleset=det.ruleset)
    rules_level = snap(det.level)
    before_command = before.command_level if before else None
    override = before.override if before else None
    if before is not None and (before.rules_level.code if before.rules_level else None) != (
        rules_level.code if rules_level else None
    ):
        override = None  # the rules' level changed: an override holds no longer
    command = override.level if override else rules_level
    if direction(before_command, command) != "unchanged" and (before is not None or command is not None):
        event(
            m.LEVEL_CHANGED,
            from_level=before_command.json() if before_command else None,
            to_level=command.json() if command else None,
            changed_by="rules",
        )
    units = _units(det)
    before_units = {u.id: u for u in before.units} if before else {}
    added = tuple(u for u in units if u.id not in before_units)
    dropped = tuple(u for u in before_units.values() if u.id not in {x.id for x in units})
    if added:
        event(m.UNITS_ADDED, units=[[u.id, u.name] for u in added])
    if dropped:
        event(m.UNITS_DROPPED, units=[[u.id, u.name] for u in dropped])
    groups = tuple(Ref(g.id, g.name) for g in det.groups)
    before_groups = {g.id for g in before.groups} if before else set()
    # Obligations: kept as they stand while still required; new ones start their clocks now.
    required = {o.id: o for o in det.obligations}
    kept: list[TrackedObligation] = []
    obligations_added: list[str] = []
    obligations_dropped: list[str] = []
    old = {o.id: o for o in before.obligations} if before else {}
    for o in det.obligations:
        ob_starts = {**starts, deadlines.INCIDENT_REPORTED: reported_at}
        prior = old.get(o.id)
        if prior is None:
            tracked = _tracked(o, reported_at, ob_starts, at_once_grace)
            obligations_added.append(o.id)
            kept.append(tracked)
            if tracked.due_at is not None:
                event(m.OBLIGATION_DUE, **_obligation_body(tracked))
            continue
        if prior.state == m.PENDING and prior.due_at is None:
            # Waiting for its start event: the clock may start now that more events are known.
            tracked = _tracked(
                o, prior.required_since, {**starts, deadlines.INCIDENT_REPORTED: prior.required_since}, at_once_grace
            )
            if tracked.due_at is not None:
                event(m.OBLIGATION_DUE, **_obligation_body(tracked))
            kept.append(tracked)
            continue
        kept.append(prior)
    for prior in old.values():
        if prior.id in required:
            continue
        if prior.state in (m.PENDING, m.PROMPTLY):
            obligations_dropped.append(prior.id)
            gone = TrackedObligation(**{**prior.__dict__, "state": m.DROPPED})
            event(m.OBLIGATION_DROPPED, **_obligation_body(gone))
        else:
            kept.append(prior)  # met or overdue: what happened stays on record
    record = Record(
        id=incident_id,
        type=incident_type,
        ruleset=det.ruleset,
        version=det.version,
        status=m.OPEN,
        rev=rev,
        facts=dict(facts),
        starts=starts,
        rules_level=rules_level,
        override=override,
        units=units,
        groups=groups,
        obligations=tuple(kept),
        opened_at=before.opened_at if before else reported_at,
        updated_at=now,
    )
    history = HistoryEntry(
        "report",
        rev,
        reported_at,
        caller,
        {
            "reporter": reporter,
            "facts": dict(facts),
            "start_events": {k: m.to_micros(v) for k, v in start_events.items()},
        },
    )
    return Change(
        record,
        tuple(events),
        history,
        previous_command=before_command,
        units_added=added,
        units_dropped=dropped,
        groups_added=tuple(g.id for g in groups if g.id not in before_groups),
        groups_dropped=tuple(g for g in sorted(before_groups) if g not in {x.id for x in groups}),
        obligations_added=tuple(obligations_added),
        obligations_dropped=tuple(obligations_dropped),
    )


def _open(before: Record) -> None:
    if before.status != m.OPEN:
        raise IncidentClosed(f"incident '{before.id}' is closed", field="incident_id")


def set_command_level(
    before: Record, level: LevelSnap, *, by: str, reason: str, caller: str, at: dt.datetime, now: dt.datetime
) -> Change:
    """A commander's override: up or down; below the rules' level only with a reason."""
    _open(before)
    if not by.strip():
        raise IncidentRequestInvalid("name the commander who sets the level", field="by", reason="missing")
    if level.rank < _rank(before.rules_level) and not reason.strip():
        raise IncidentRequestInvalid(
            f"lowering the command level below the rules' level ({before.rules_level.name if before.rules_level else ''}) needs a reason on record",
            field="reason",
            reason="missing",
        )
    rev = before.rev + 1
    previous = before.command_level
    override = m.Override(level, by, caller, reason, at)
    events: list[Event] = []
    if direction(previous, level) != "unchanged":
        events.append(
            Event(
                m.LEVEL_CHANGED,
                before.id,
                now,
                rev,
                {
                    "caller": caller,
                    "from_level": previous.json() if previous else None,
                    "to_level": level.json(),
                    "changed_by": "override",
                    "reason": reason,
                    "by": by,
                },
            )
        )
    record = before.but(override=override, rev=rev, updated_at=now)
    history = HistoryEntry("override", rev, at, caller, {"level": level.code, "by": by, "reason": reason})
    return Change(record, tuple(events), history, previous_command=previous)


def _replace_obligation(record: Record, new: TrackedObligation) -> tuple[TrackedObligation, ...]:
    return tuple(new if o.id == new.id else o for o in record.obligations)


def acknowledge(
    before: Record,
    obligation_id: str,
    *,
    unit: str,
    note: str,
    caller: str,
    at: dt.datetime,
    now: dt.datetime,
    current: ObligationResult | None,
) -> Change:
    """An obligation met by one of the units that owe it. Acknowledging what is met already changes
    nothing. A recurring obligation (deadlines.next_due) is met for this time and falls due again."""
    _open(before)
    tracked = before.obligation(obligation_id)
    if tracked is None:
        raise IncidentRequestInvalid(
            f"incident '{before.id}' has no obligation '{obligation_id}' (it has: {', '.join(o.id for o in before.obligations)})",
            field="obligation_id",
            reason="unknown_obligation",
        )
    if tracked.who and unit not in {r.id for r in tracked.who}:
        raise IncidentRequestInvalid(
            f"obligation '{obligation_id}' is owed by {', '.join(r.id for r in tracked.who)}, not '{unit}'",
            field="unit",
            reason="not_owed_by_unit",
        )
    if tracked.state == m.MET:
        return Change(before, (), None, previous_command=before.command_level, changed=False)
    rev = before.rev + 1
    met = TrackedObligation(**{**tracked.__dict__, "state": m.MET, "met_at": at, "met_by": unit})
    events = [Event(m.OBLIGATION_MET, before.id, now, rev, {"caller": caller, "note": note, **_obligation_body(met)})]
    following = deadlines.next_due(current, tracked.due_at) if current is not None and tracked.due_at else None
    now_tracked = met
    if current is not None and following is not None:
        now_tracked = TrackedObligation(
            **{**met.__dict__, "state": m.PENDING, "due_at": following, "overdue_at": _late_from(current, following)}
        )
        events.append(Event(m.OBLIGATION_DUE, before.id, now, rev, {"caller": caller, **_obligation_body(now_tracked)}))
    record = before.but(obligations=_replace_obligation(before, now_tracked), rev=rev, updated_at=now)
    history = HistoryEntry("acknowledge", rev, at, caller, {"obligation_id": obligation_id, "unit": unit, "note": note})
    return Change(record, tuple(events), history, previous_command=before.command_level)


def overdue(
    before: Record,
    obligation_id: str,
    fires_at: dt.datetime,
    *,
    now: dt.datetime,
    late_after: dt.timedelta,
    current: ObligationResult | None,
) -> Change:
    """A clock that came due: its obligation is overdue (late when written more than late_after
    after its time, e.g. the service was down). A stale clock (met, dropped, closed) changes nothing."""
    tracked = before.obligation(obligation_id)
    if before.status != m.OPEN or tracked is None or tracked.state != m.PENDING or tracked.overdue_at != fires_at:
        return Change(before, (), None, changed=False)
    rev = before.rev + 1
    late = now - fires_at > late_after
    gone = TrackedObligation(**{**tracked.__dict__, "state": m.OVERDUE})
    events = [
        Event(m.OBLIGATION_OVERDUE, before.id, now, rev, {"caller": "clock", "late": late, **_obligation_body(gone)})
    ]
    following = deadlines.next_due(current, tracked.due_at) if current is not None and tracked.due_at else None
    if current is not None and following is not None:
        # A recurring duty: this time is overdue (the event says so), the next one is pending.
        late_from = _late_from(current, following)
        gone = TrackedObligation(**{**gone.__dict__, "state": m.PENDING, "due_at": following, "overdue_at": late_from})
        events.append(Event(m.OBLIGATION_DUE, before.id, now, rev, {"caller": "clock", **_obligation_body(gone)}))
    record = before.but(obligations=_replace_obligation(before, gone), rev=rev, updated_at=now)
    history = HistoryEntry("overdue", rev, now, "clock", {"obligation_id": obligation_id, "late": late})
    return Change(record, tuple(events), history, previous_command=before.command_level)


def close(before: Record, *, by: str, reason: str, caller: str, at: dt.datetime, now: dt.datetime) -> Change:
    """Stand-down (响应终止): the incident is closed and no clock of it fires any more."""
    _open(before)
    rev = before.rev + 1
    record = before.but(status=m.CLOSED, rev=rev, updated_at=now, closed_at=at)
    events = (Event(m.CLOSED_EVENT, before.id, now, rev, {"caller": caller, "by": by, "reason": reason}),)
    history = HistoryEntry("close", rev, at, caller, {"by": by, "reason": reason})
    return Change(record, events, history, previous_command=before.command_level)
