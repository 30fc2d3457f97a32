"""The incident store's one test suite, run over both backends: SQLite in a file and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from liandong.errors import StoreUnavailable
from liandong.incidents import model as m
from liandong.incidents.model import Change, Event, HistoryEntry, Record, TrackedObligation
from liandong.store.base import Due, Query
from liandong.store.sql import SqlStore
from support.postgres import fresh_database

T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return fresh_database()


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    s = SqlStore(url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def _obligation(oid: str, due: dt.datetime | None) -> TrackedObligation:
    return TrackedObligation(oid, oid, (), ("doc", "1"), "20m", m.PENDING, T0, due_at=due, overdue_at=due)


def _record(incident_id: str, rev: int = 1, **changes: object) -> Record:
    base = Record(
        id=incident_id,
        type="mass_incident",
        ruleset="township-mass-incident",
        version="2024.1",
        status=m.OPEN,
        rev=rev,
        facts={},
        starts={},
        rules_level=m.LevelSnap("township", "镇级", 2),
        override=None,
        units=(),
        groups=(),
        obligations=(),
        opened_at=T0,
        updated_at=T0,
    )
    return base.but(**changes)


def _opening(incident_id: str, *obligations: TrackedObligation) -> Change:
    rec = _record(incident_id, obligations=obligations)
    return Change(rec, (Event(m.OPENED, incident_id, T0, 1),), HistoryEntry("report", 1, T0, "tester"))


def _bump(key: str) -> object:
    """A change that counts one more report under facts[key]."""

    def apply(before: Record | None) -> Change:
        assert before is not None
        facts = dict(before.facts)
        facts[key] = int(str(facts.get(key, 0))) + 1
        rec = before.but(rev=before.rev + 1, facts=facts)
        return Change(rec, (Event(m.UNITS_ADDED, before.id, T0, rec.rev),), HistoryEntry("report", rec.rev, T0, key))

    return apply


def test_change_writes_record_history_and_numbered_events(store: SqlStore) -> None:
    """A change is written whole: the record, its history entry, and events numbered from 1."""
    done = store.change("a", lambda before: _opening("a"))
    assert [e.sequence for e in done.events] == [1]
    store.change("a", _bump("x"))  # type: ignore[arg-type]
    got = store.get("a")
    assert got is not None and got.rev == 2 and got.facts == {"x": 1}
    assert [h.kind for h in store.history("a")] == ["report", "report"]
    assert [(e.sequence, e.kind) for e in store.events(0)] == [(1, m.OPENED), (2, m.UNITS_ADDED)]
    assert store.last_sequence() == 2
    assert store.get("nope") is None


def test_failed_change_writes_nothing(store: SqlStore) -> None:
    """A change whose function raises leaves no record, history, event or clock behind."""

    def broken(before: Record | None) -> Change:
        raise ValueError("refused")

    with pytest.raises(ValueError):
        store.change("b", broken)
    assert store.get("b") is None and store.events(0) == [] and store.history("b") == []


def test_concurrent_changes_to_one_incident_lose_nothing(url: str, store: SqlStore) -> None:
    """Eight threads over two store handles (two replicas) report 15 times each to one incident: all 120 land."""
    store.change("c", lambda before: _opening("c"))
    other = SqlStore(url)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        s = store if n % 2 else other
        try:
            for _ in range(15):
                s.change("c", _bump(f"k{n}"))  # type: ignore[arg-type]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    other.close()
    assert not errors
    got = store.get("c")
    assert got is not None and got.rev == 121
    assert got.facts == {f"k{n}": 15 for n in range(8)}
    sequences = [e.sequence for e in store.events(0, limit=1000)]
    assert sequences == list(range(1, 122))


def test_clocks_are_rows_that_fire_once_across_replicas(url: str, store: SqlStore) -> None:
    """Forty due clocks claimed by two replicas at once: each fires exactly once."""
    due = T0 + dt.timedelta(minutes=20)
    for i in range(20):
        store.change(f"d{i}", lambda before, i=i: _opening(f"d{i}", _obligation("x", due), _obligation("y", due)))
    assert store.pending_clocks() == 40
    assert store.next_due() == due
    assert store.due(T0) == []
    other = SqlStore(url)
    fired: list[tuple[str, str]] = []
    lock = threading.Lock()

    def fire_all(s: SqlStore) -> None:
        for d in s.due(due, limit=100):
            change = s.fire(d, lambda rec, d=d: _overdue(rec, d))
            if change is not None:
                with lock:
                    fired.append((d.incident_id, d.obligation_id))

    threads = [threading.Thread(target=fire_all, args=(s,)) for s in (store, other, store, other)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    # A clock skipped because another replica held its incident is fired on a later pass.
    fire_all(store)
    other.close()
    assert sorted(fired) == sorted((f"d{i}", o) for i in range(20) for o in ("x", "y"))
    assert store.pending_clocks() == 0


def _overdue(rec: Record, d: Due) -> Change:
    obs = tuple(
        TrackedObligation(**{**o.__dict__, "state": m.OVERDUE}) if o.id == d.obligation_id else o
        for o in rec.obligations
    )
    after = rec.but(rev=rec.rev + 1, obligations=obs)
    return Change(
        after, (Event(m.OBLIGATION_OVERDUE, rec.id, T0, after.rev, {"obligation_id": d.obligation_id}),), None
    )


def test_closing_removes_clocks(store: SqlStore) -> None:
    """A closed incident keeps no clock rows: none can fire."""
    store.change("e", lambda before: _opening("e", _obligation("x", T0)))
    assert store.pending_clocks() == 1
    store.change(
        "e",
        lambda before: Change(before.but(status=m.CLOSED, rev=2), (Event(m.CLOSED_EVENT, "e", T0, 2),), None),  # type: ignore[union-attr]
    )
    assert store.pending_clocks() == 0 and store.due(T0 + dt.timedelta(days=1)) == []


def test_find_filters_and_pages(store: SqlStore) -> None:
    """find() filters by status, type, level rank and update time, and pages by id without repeats."""
    for i in range(7):
        rec = _record(f"f{i}", updated_at=T0 + dt.timedelta(minutes=i), status=m.OPEN if i % 2 else m.CLOSED)
        store.change(rec.id, lambda before, rec=rec: Change(rec, (Event(m.OPENED, rec.id, T0, 1),), None))
    seen: list[str] = []
    token = ""
    while True:
        page = store.find(Query(page_size=3, after_id=token))
        seen += [r.id for r in page.records]
        if not page.next_token:
            break
        token = page.next_token
    assert seen == [f"f{i}" for i in range(7)]
    assert [r.id for r in store.find(Query(status=m.OPEN)).records] == ["f1", "f3", "f5"]
    assert [r.id for r in store.find(Query(updated_since=T0 + dt.timedelta(minutes=5))).records] == ["f5", "f6"]
    assert store.find(Query(level_rank_at_least=3)).records == ()
    assert len(store.find(Query(level_rank_at_least=2, type="mass_incident")).records) == 7
    assert store.open_counts() == [("township-mass-incident", "township", 3)]


def test_unreachable_store_is_unavailable(tmp_path: Path) -> None:
    """A store that cannot be reached raises StoreUnavailable (UNAVAILABLE on the wire), for both kinds."""
    (tmp_path / "file").write_text("not a directory")
    for url in (f"sqlite:///{tmp_path / 'file' / 'x.sqlite3'}", "postgresql://nobody@127.0.0.1:1/none"):
        s = SqlStore(url)
        with pytest.raises(StoreUnavailable):
            s.change("z", lambda before: _opening("z"))
        s.close()


def test_migrations_make_the_schema_the_code_uses(store: SqlStore) -> None:
    """The database the Alembic migrations made matches store/schema.py exactly (autogenerate finds no difference)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from liandong.store import schema

    with store._writer.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert differences == []
