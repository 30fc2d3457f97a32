"""The incident store over SQLAlchemy Core: SQLite (the default, one file in WAL mode) or PostgreSQL.

SQLite: one writer at a time (BEGIN IMMEDIATE, and a lock in the process so threads queue here
rather than in SQLite's busy loop); WAL with synchronous=NORMAL: a change answered OK is in the WAL
file before the answer leaves, so it survives kill -9 of the process at any instant (a power cut can
lose the last commits; FULL would fsync each one, about 2-3 ms a report on the test machine). PostgreSQL: the incident row is locked (SELECT … FOR UPDATE) for the length of a
change; clocks are claimed with FOR UPDATE SKIP LOCKED on their incident, so replicas share them and
each fires once. Event sequences come from one counter row taken last in each transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from liandong.errors import StoreUnavailable
from liandong.incidents.model import Change, Event, HistoryEntry, Record, from_micros, to_micros
from liandong.store import schema as t
from liandong.store.base import Due, Page, Query

MIGRATIONS = Path(__file__).parent / "migrations"
RETRIES = 5
SQLITE_FILE = "liandong.sqlite3"


# Statements built once: building one per call (coercions, cache keys) cost more than running it.
_INCIDENT_COLUMNS = (
    "type",
    "ruleset",
    "version",
    "status",
    "rev",
    "level_code",
    "level_rank",
    "opened_at",
    "updated_at",
    "record",
)
_SELECT_INCIDENT = sa.select(t.incidents.c.record, t.incidents.c.rev).where(t.incidents.c.id == sa.bindparam("b_id"))
_SELECT_INCIDENT_LOCKED = _SELECT_INCIDENT.with_for_update()
_SELECT_INCIDENT_SKIP = _SELECT_INCIDENT.with_for_update(skip_locked=True)
_UPDATE_INCIDENT = (
    sa.update(t.incidents)
    .where(t.incidents.c.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(name) for name in _INCIDENT_COLUMNS})
)
_INSERT_INCIDENT = sa.insert(t.incidents)
_INSERT_HISTORY = sa.insert(t.history)
_DELETE_CLOCKS = sa.delete(t.clocks).where(t.clocks.c.incident_id == sa.bindparam("b_id"))
_INSERT_CLOCKS = sa.insert(t.clocks)
_TAKE_SEQUENCES = (
    sa.update(t.counters)
    .where(t.counters.c.name == "events")
    .values(value=t.counters.c.value + sa.bindparam("n", type_=sa.BigInteger))
    .returning(t.counters.c.value)
)
_INSERT_EVENTS = sa.insert(t.events)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def describe(url: str) -> str:
    """The store's URL fit for a log line: no password."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable store URL)"


def _retryable(error: sa_exc.DBAPIError) -> bool:
    """A lost race (two first reports of one id), a serialization failure or a deadlock: try again."""
    if isinstance(error, sa_exc.IntegrityError):
        return True
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code in ("40001", "40P01")


class SqlStore:
    """One implementation for both dialects; the differences are in how connections begin."""

    def __init__(self, url: str, on_error: Callable[[str], None] | None = None) -> None:
        self.url = url
        self._on_error = on_error or (lambda op: None)
        parsed = sa.make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            connect = {"timeout": 30, "check_same_thread": False}
            self._writer = sa.create_engine(url, connect_args=connect, pool_size=2, max_overflow=2)
            self._reader = sa.create_engine(url, connect_args=connect, pool_size=4, max_overflow=8)
            self._setup_sqlite(self._writer, "BEGIN IMMEDIATE")
            self._setup_sqlite(self._reader, "BEGIN")
            self._write_lock: Any = threading.Lock()
        elif self.dialect == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            query = dict(parsed.query)
            query.setdefault("connect_timeout", "3")
            parsed = parsed.set(query=query)
            self._writer = sa.create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)
            self._reader = self._writer
            self._write_lock = nullcontext()
        else:
            raise ValueError(f"unsupported store '{describe(url)}': use sqlite:///PATH or postgresql://…")
        self._migrated = False
        self._migrate_lock = threading.Lock()

    @staticmethod
    def _setup_sqlite(engine: Engine, begin: str) -> None:
        @sa_event.listens_for(engine, "connect")
        def connect(dbapi: Any, record: Any) -> None:
            dbapi.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa_event.listens_for(engine, "begin")
        def do_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

    @classmethod
    def for_data_dir(cls, data_dir: Path, on_error: Callable[[str], None] | None = None) -> SqlStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}", on_error)

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            self._on_error(operation)
            raise StoreUnavailable(
                f"the incident store ({self.dialect}) cannot be reached; nothing was written",
                reason="store_unavailable",
            ) from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                self._on_error(operation)
                raise StoreUnavailable(
                    f"the incident store ({self.dialect}) lost its connection; nothing was written"
                ) from exc
            raise

    def migrate(self) -> None:
        """Bring the schema to the latest migration (Alembic); done once, before the first use."""
        if self._migrated:
            return
        with self._migrate_lock, self._guard("migrate"):
            if self._migrated:
                return
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            with self._write_lock, self._writer.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            self._migrated = True

    @contextmanager
    def _write(self, operation: str) -> Iterator[Connection]:
        self.migrate()
        with self._guard(operation), self._write_lock, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self, operation: str) -> Iterator[Connection]:
        self.migrate()
        with self._guard(operation), self._reader.connect() as conn:
            yield conn

    def _lock_incident(self, conn: Connection, incident_id: str, skip_locked: bool = False) -> tuple[bool, Any]:
        """(found-or-lockable, row): the incident row locked for this transaction (PostgreSQL;
        SQLite's write transaction already excludes every other writer)."""
        query = _SELECT_INCIDENT
        if self.dialect == "postgresql":
            query = _SELECT_INCIDENT_SKIP if skip_locked else _SELECT_INCIDENT_LOCKED
        row = conn.execute(query, {"b_id": incident_id}).first()
        return True, row

    def _store(self, conn: Connection, change: Change, existed: bool, clocks_before: dict[str, dt.datetime]) -> Change:
        rec = change.record
        level = rec.command_level
        values = dict(
            type=rec.type,
            ruleset=rec.ruleset,
            version=rec.version,
            status=rec.status,
            rev=rec.rev,
            level_code=level.code if level else None,
            level_rank=level.rank if level else -1,
            opened_at=to_micros(rec.opened_at),
            updated_at=to_micros(rec.updated_at),
            record=_dumps(rec.json()),
        )
        if existed:
            conn.execute(sa.update(t.incidents).where(t.incidents.c.id == rec.id).values(**values))
        else:
            conn.execute(sa.insert(t.incidents).values(id=rec.id, **values))
        if change.history is not None:
            h = change.history
            conn.execute(
                sa.insert(t.history).values(
                    incident_id=rec.id,
                    rev=h.rev,
                    kind=h.kind,
                    at=to_micros(h.at),
                    caller=h.caller,
                    detail=_dumps(h.detail),
                )
            )
        clocks_after = rec.clocks()
        if clocks_after != clocks_before:
            conn.execute(sa.delete(t.clocks).where(t.clocks.c.incident_id == rec.id))
            if clocks_after:
                conn.execute(
                    sa.insert(t.clocks),
                    [
                        {"incident_id": rec.id, "obligation_id": k, "due_at": to_micros(v)}
                        for k, v in clocks_after.items()
                    ],
                )
        numbered: list[Event] = []
        if change.events:
            # Taken last, so the counter row is held for as short a time as the transaction allows.
            last = conn.execute(_TAKE_SEQUENCES, {"n": len(change.events)}).scalar_one()
            first = int(last) - len(change.events) + 1
            for i, e in enumerate(change.events):
                numbered.append(Event(e.kind, e.incident_id, e.at, e.rev, e.body, sequence=first + i))
            conn.execute(
                _INSERT_EVENTS,
                [
                    {
                        "sequence": e.sequence,
                        "incident_id": e.incident_id,
                        "kind": e.kind,
                        "at": to_micros(e.at),
                        "rev": e.rev,
                        "body": _dumps(e.body),
                    }
                    for e in numbered
                ],
            )
        return Change(**{**change.__dict__, "events": tuple(numbered)})

    # -- changes -------------------------------------------------------------------------------
    def change(self, incident_id: str, fn: Callable[[Record | None], Change]) -> Change:
        """fn runs first on the record as read without a lock, so the rules are evaluated while other
        changes write; in the transaction, if the incident moved on meanwhile, fn runs again on the
        locked record. fn must be pure: it may run twice, and only the run on the locked record counts."""
        guess = self.get(incident_id)
        early = fn(guess)  # an exception here: nothing was written
        for attempt in range(RETRIES):
            try:
                with self._write("change") as conn:
                    _, row = self._lock_incident(conn, incident_id)
                    if (int(row.rev) if row is not None else None) == (guess.rev if guess else None):
                        before, change = guess, early
                    else:
                        before = Record.of(json.loads(row.record)) if row is not None else None
                        change = fn(before)
                    if not change.changed:
                        return change
                    return self._store(conn, change, row is not None, before.clocks() if before else {})
            except sa_exc.DBAPIError as exc:
                if attempt == RETRIES - 1 or not _retryable(exc):
                    raise
        raise AssertionError("unreachable")

    def fire(self, due: Due, fn: Callable[[Record], Change]) -> Change | None:
        """Claim one clock: its incident locked (skipped if another replica holds it: it is tried
        again on the next pass), the clock row still there with the same time, then fn."""
        with self._write("fire") as conn:
            _, row = self._lock_incident(conn, due.incident_id, skip_locked=True)
            if row is None:
                return None
            clock = conn.execute(
                sa.select(t.clocks.c.due_at).where(
                    t.clocks.c.incident_id == due.incident_id, t.clocks.c.obligation_id == due.obligation_id
                )
            ).scalar_one_or_none()
            if clock is None or int(clock) != to_micros(due.fires_at):
                return None
            before = Record.of(json.loads(row.record))
            change = fn(before)
            if not change.changed:
                # A stale clock: drop it so it is not claimed again.
                conn.execute(
                    sa.delete(t.clocks).where(
                        t.clocks.c.incident_id == due.incident_id, t.clocks.c.obligation_id == due.obligation_id
                    )
                )
                return None
            return self._store(conn, change, True, before.clocks())

    # -- reading -------------------------------------------------------------------------------
    def get(self, incident_id: str) -> Record | None:
        with self._read("get") as conn:
            text = conn.execute(sa.select(t.incidents.c.record).where(t.incidents.c.id == incident_id)).scalar()
        return None if text is None else Record.of(json.loads(text))

    def history(self, incident_id: str) -> list[HistoryEntry]:
        with self._read("history") as conn:
            rows = conn.execute(
                sa.select(t.history).where(t.history.c.incident_id == incident_id).order_by(t.history.c.id)
            ).all()
        return [HistoryEntry(r.kind, int(r.rev), from_micros(int(r.at)), r.caller, json.loads(r.detail)) for r in rows]

    def events(self, after: int, incident_id: str = "", limit: int = 500) -> list[Event]:
        query = sa.select(t.events).where(t.events.c.sequence > after)
        if incident_id:
            query = query.where(t.events.c.incident_id == incident_id)
        with self._read("events") as conn:
            rows = conn.execute(query.order_by(t.events.c.sequence).limit(limit)).all()
        return [
            Event(
                r.kind, r.incident_id, from_micros(int(r.at)), int(r.rev), json.loads(r.body), sequence=int(r.sequence)
            )
            for r in rows
        ]

    def last_sequence(self) -> int:
        with self._read("events") as conn:
            return int(conn.execute(sa.select(t.counters.c.value).where(t.counters.c.name == "events")).scalar_one())

    def find(self, query: Query) -> Page:
        q = sa.select(t.incidents.c.id, t.incidents.c.record).order_by(t.incidents.c.id)
        if query.status:
            q = q.where(t.incidents.c.status == query.status)
        if query.type:
            q = q.where(t.incidents.c.type == query.type)
        if query.level_rank_at_least is not None:
            q = q.where(t.incidents.c.level_rank >= query.level_rank_at_least)
        if query.updated_since is not None:
            q = q.where(t.incidents.c.updated_at >= to_micros(query.updated_since))
        if query.after_id:
            q = q.where(t.incidents.c.id > query.after_id)
        with self._read("list") as conn:
            rows = conn.execute(q.limit(query.page_size + 1)).all()
        more = len(rows) > query.page_size
        rows = rows[: query.page_size]
        records = tuple(Record.of(json.loads(r.record)) for r in rows)
        return Page(records, rows[-1].id if more and rows else "")

    def due(self, now: dt.datetime, limit: int = 500) -> list[Due]:
        with self._read("due") as conn:
            rows = conn.execute(
                sa.select(t.clocks).where(t.clocks.c.due_at <= to_micros(now)).order_by(t.clocks.c.due_at).limit(limit)
            ).all()
        return [Due(r.incident_id, r.obligation_id, from_micros(int(r.due_at))) for r in rows]

    def next_due(self) -> dt.datetime | None:
        with self._read("due") as conn:
            value = conn.execute(sa.select(sa.func.min(t.clocks.c.due_at))).scalar()
        return None if value is None else from_micros(int(value))

    def open_counts(self) -> Sequence[tuple[str, str, int]]:
        with self._read("metrics") as conn:
            rows = conn.execute(
                sa.select(t.incidents.c.ruleset, t.incidents.c.level_code, sa.func.count())
                .where(t.incidents.c.status == "open")
                .group_by(t.incidents.c.ruleset, t.incidents.c.level_code)
            ).all()
        return [(r[0], r[1] or "none", int(r[2])) for r in rows]

    def pending_clocks(self) -> int:
        with self._read("metrics") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.clocks)).scalar_one())

    def close(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()


def open_store(store: str, data_dir: Path, on_error: Callable[[str], None] | None = None) -> SqlStore:
    """--store: empty for SQLite under --data-dir, else a sqlite:/// or postgresql:// URL."""
    if not store:
        return SqlStore.for_data_dir(data_dir, on_error)
    return SqlStore(store, on_error)
