"""An incident's record as the store keeps it: frozen values that turn into JSON and back.

Times are timezone-aware UTC datetimes here and whole microseconds since the epoch in the store,
so that SQLite and PostgreSQL compare and index them the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

OPEN = "open"
CLOSED = "closed"

# Obligation states (TrackedObligation.State on the wire).
PENDING = "pending"
MET = "met"
OVERDUE = "overdue"
PROMPTLY = "promptly"
DROPPED = "dropped"

# Event kinds (IncidentEvent.Kind on the wire, lower case).
OPENED = "opened"
LEVEL_CHANGED = "level_changed"
UNITS_ADDED = "units_added"
UNITS_DROPPED = "units_dropped"
OBLIGATION_DUE = "obligation_due"
OBLIGATION_MET = "obligation_met"
OBLIGATION_OVERDUE = "obligation_overdue"
OBLIGATION_DROPPED = "obligation_dropped"
CLOSED_EVENT = "closed"
EVENT_KINDS = (
    OPENED,
    LEVEL_CHANGED,
    UNITS_ADDED,
    UNITS_DROPPED,
    OBLIGATION_DUE,
    OBLIGATION_MET,
    OBLIGATION_OVERDUE,
    CLOSED_EVENT,
    OBLIGATION_DROPPED,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_micros(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def from_micros(value: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=value)


def _t(value: dt.datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def _d(value: object) -> dt.datetime | None:
    return None if value is None else from_micros(int(str(value)))


@dataclass(frozen=True)
class LevelSnap:
    code: str
    name: str
    rank: int

    def json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "rank": self.rank}

    @staticmethod
    def of(data: Any) -> LevelSnap | None:
        return None if data is None else LevelSnap(str(data["code"]), str(data["name"]), int(data["rank"]))


@dataclass(frozen=True)
class Override:
    """A commander's command level; it holds until the rules' level next changes."""

    level: LevelSnap
    by: str
    caller: str
    reason: str
    at: dt.datetime

    def json(self) -> dict[str, Any]:
        return {
            "level": self.level.json(),
            "by": self.by,
            "caller": self.caller,
            "reason": self.reason,
            "at": _t(self.at),
        }

    @staticmethod
    def of(data: Any) -> Override | None:
        if data is None:
            return None
        level = LevelSnap.of(data["level"])
        assert level is not None
        at = _d(data["at"])
        assert at is not None
        return Override(level, str(data["by"]), str(data["caller"]), str(data["reason"]), at)


@dataclass(frozen=True)
class Ref:
    """A unit or group by id and name."""

    id: str
    name: str


@dataclass(frozen=True)
class TrackedObligation:
    id: str
    text: str
    who: tuple[Ref, ...]
    citation: tuple[str, str]  # (document, clause)
    within: str  # as the plan words it (20m), else the timing kind
    state: str
    required_since: dt.datetime
    due_at: dt.datetime | None = None
    overdue_at: dt.datetime | None = None  # when the clock fires: due_at, plus the grace for an at-once duty
    met_at: dt.datetime | None = None
    met_by: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "who": [[r.id, r.name] for r in self.who],
            "citation": list(self.citation),
            "within": self.within,
            "state": self.state,
            "required_since": _t(self.required_since),
            "due_at": _t(self.due_at),
            "overdue_at": _t(self.overdue_at),
            "met_at": _t(self.met_at),
            "met_by": self.met_by,
        }

    @staticmethod
    def of(data: Any) -> TrackedObligation:
        since = _d(data["required_since"])
        assert since is not None
        return TrackedObligation(
            id=str(data["id"]),
            text=str(data["text"]),
            who=tuple(Ref(str(i), str(n)) for i, n in data["who"]),
            citation=(str(data["citation"][0]), str(data["citation"][1])),
            within=str(data["within"]),
            state=str(data["state"]),
            required_since=since,
            due_at=_d(data["due_at"]),
            overdue_at=_d(data["overdue_at"]),
            met_at=_d(data["met_at"]),
            met_by=str(data["met_by"]),
        )


@dataclass(frozen=True)
class Record:
    """One incident as it stands after its latest change."""

    id: str
    type: str
    ruleset: str
    version: str
    status: str
    rev: int
    facts: dict[str, object]
    starts: dict[str, dt.datetime]  # start events other than the report: their first reported moment
    rules_level: LevelSnap | None
    override: Override | None
    units: tuple[Ref, ...]
    groups: tuple[Ref, ...]
    obligations: tuple[TrackedObligation, ...]
    opened_at: dt.datetime
    updated_at: dt.datetime
    closed_at: dt.datetime | None = None

    @property
    def command_level(self) -> LevelSnap | None:
        return self.override.level if self.override is not None else self.rules_level

    def obligation(self, obligation_id: str) -> TrackedObligation | None:
        return next((o for o in self.obligations if o.id == obligation_id), None)

    def clocks(self) -> dict[str, dt.datetime]:
        """obligation id -> when its clock fires; none once closed."""
        if self.status != OPEN:
            return {}
        return {o.id: o.overdue_at for o in self.obligations if o.state == PENDING and o.overdue_at is not None}

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "ruleset": self.ruleset,
            "version": self.version,
            "status": self.status,
            "rev": self.rev,
            "facts": self.facts,
            "starts": {k: _t(v) for k, v in self.starts.items()},
            "rules_level": None if self.rules_level is None else self.rules_level.json(),
            "override": None if self.override is None else self.override.json(),
            "units": [[r.id, r.name] for r in self.units],
            "groups": [[r.id, r.name] for r in self.groups],
            "obligations": [o.json() for o in self.obligations],
            "opened_at": _t(self.opened_at),
            "updated_at": _t(self.updated_at),
            "closed_at": _t(self.closed_at),
        }

    @staticmethod
    def of(data: Any) -> Record:
        opened, updated = _d(data["opened_at"]), _d(data["updated_at"])
        assert opened is not None and updated is not None
        return Record(
            id=str(data["id"]),
            type=str(data["type"]),
            ruleset=str(data["ruleset"]),
            version=str(data["version"]),
            status=str(data["status"]),
            rev=int(data["rev"]),
            facts=dict(data["facts"]),
            starts={str(k): from_micros(int(v)) for k, v in data["starts"].items()},
            rules_level=LevelSnap.of(data["rules_level"]),
            override=Override.of(data["override"]),
            units=tuple(Ref(str(i), str(n)) for i, n in data["units"]),
            groups=tuple(Ref(str(i), str(n)) for i, n in data["groups"]),
            obligations=tuple(TrackedObligation.of(o) for o in data["obligations"]),
            opened_at=opened,
            updated_at=updated,
            closed_at=_d(data["closed_at"]),
        )

    def but(self, **changes: Any) -> Record:
        return replace(self, **changes)


@dataclass(frozen=True)
class Event:
    """Something that happened to an incident; the store gives it its sequence number."""

    kind: str
    incident_id: str
    at: dt.datetime
    rev: int
    body: dict[str, Any] = field(default_factory=dict)  # from/to levels, units, obligation, late, caller, reason
    sequence: int = 0


@dataclass(frozen=True)
class HistoryEntry:
    """A call that changed the incident, by whom, with what it carried."""

    kind: str  # report, override, acknowledge, close, overdue
    rev: int
    at: dt.datetime
    caller: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """What one call did: the record after it, its events, its history entry, and what it added or dropped."""

    record: Record
    events: tuple[Event, ...]
    history: HistoryEntry | None
    previous_command: LevelSnap | None = None
    units_added: tuple[Ref, ...] = ()
    units_dropped: tuple[Ref, ...] = ()
    groups_added: tuple[str, ...] = ()
    groups_dropped: tuple[str, ...] = ()
    obligations_added: tuple[str, ...] = ()
    obligations_dropped: tuple[str, ...] = ()
    changed: bool = True  # False: nothing to write (e.g. an acknowledgement repeated)
