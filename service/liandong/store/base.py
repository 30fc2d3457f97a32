"""The one interface both stores offer (SQLite and PostgreSQL share one implementation in sql.py).

Every change to an incident runs as `change(id, fn)`: the store locks the incident, hands its record
(or None) to fn, and writes what fn returns (record, history entry, events with their sequence
numbers, clock rows) in one transaction, or nothing. Clocks are rows: `due(now)` lists those whose
time has come and `fire` claims one under its incident's lock, so each fires once across replicas.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from liandong.incidents.model import Change, Event, HistoryEntry, Record


@dataclass(frozen=True)
class Page:
    records: tuple[Record, ...]
    next_token: str


@dataclass(frozen=True)
class Query:
    status: str = ""  # open, closed, or '' for any
    type: str = ""
    level_rank_at_least: int | None = None
    updated_since: dt.datetime | None = None
    page_size: int = 50
    after_id: str = ""


@dataclass(frozen=True)
class Due:
    incident_id: str
    obligation_id: str
    fires_at: dt.datetime


class IncidentStore(Protocol):
    dialect: str

    def migrate(self) -> None: ...

    def change(self, incident_id: str, fn: Callable[[Record | None], Change]) -> Change: ...

    def fire(self, due: Due, fn: Callable[[Record], Change]) -> Change | None: ...

    def get(self, incident_id: str) -> Record | None: ...

    def history(self, incident_id: str) -> list[HistoryEntry]: ...

    def events(self, after: int, incident_id: str = "", limit: int = 500) -> list[Event]: ...

    def last_sequence(self) -> int: ...

    def find(self, query: Query) -> Page: ...

    def due(self, now: dt.datetime, limit: int = 500) -> list[Due]: ...

    def next_due(self) -> dt.datetime | None: ...

    def open_counts(self) -> Sequence[tuple[str, str, int]]: ...

    def pending_clocks(self) -> int: ...

    def close(self) -> None: ...
