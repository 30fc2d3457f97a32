"""The township story end to end against real `liandong serve` processes: SQLite in a file with kill -9
between steps, and PostgreSQL with two service processes sharing one server."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from liandong.v1 import incidents_pb2 as ipb
from support.incidents import RULES, T0, facts, kind, obligation, requested, stub
from support.postgres import fresh_database
from support.processes import Serve
from support.servers import channel

CROWD = "mass_incident"
REPLY = "reply_20min"


def _set_clock(path: Path, moment: dt.datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(moment.isoformat(), encoding="utf-8")
    tmp.replace(path)  # the server never reads half a time


def _serve(workdir: Path, clock: Path, *store: str) -> Serve:
    return Serve(
        workdir, "--rules-dir", str(RULES), "--clock-file", str(clock), "--clock-interval", "0.05", *store
    ).wait_serving()


def _events_until(target: str, after: int, last: int) -> list[ipb.IncidentEvent]:
    """Watch from after_sequence until the event numbered `last` arrives (bounded by a deadline)."""
    out: list[ipb.IncidentEvent] = []
    if last <= after:
        return out
    with channel(target) as ch:
        for e in stub(ch).WatchIncidents(ipb.WatchIncidentsRequest(after_sequence=after), timeout=30):
            out.append(e)
            if e.sequence >= last:
                break
    return out


class Watcher:
    """One WatchIncidents stream that survives a server's death by reconnecting with after_sequence."""

    def __init__(self) -> None:
        self.events: list[ipb.IncidentEvent] = []
        self.broken = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def last(self) -> int:
        return self.events[-1].sequence if self.events else 0

    def follow(self, target: str) -> None:
        self.broken.clear()

        def run() -> None:
            with channel(target) as ch:
                try:
                    for e in stub(ch).WatchIncidents(ipb.WatchIncidentsRequest(after_sequence=self.last), timeout=120):
                        self.events.append(e)
                        if kind(e) == "closed":
                            return
                except grpc.RpcError:
                    self.broken.set()

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def wait_for(self, sequence: int, timeout: float = 30) -> None:
        from support.processes import wait_until

        assert wait_until(lambda: self.last >= sequence, timeout), (self.last, sequence)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(60)


def _last_sequence(target: str, incident_id: str) -> int:
    with channel(target) as ch:
        return int(stub(ch).GetIncident(ipb.GetIncidentRequest(incident_id=incident_id)).events[-1].sequence)


def _cli(target: str, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "liandong.cli", "incident", *args, "--target", target, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, object] = json.loads(out.stdout)
    return answer


@pytest.mark.slow
def test_township_story_sqlite_survives_kill_9(tmp_path: Path) -> None:
    """Each step answered OK survives kill -9; a due time passed while down fires once, late, at restart; the watcher resumes from its last sequence with nothing missed or repeated."""
    clock = tmp_path / "now.txt"
    _set_clock(clock, T0)
    data = ("--data-dir", str(tmp_path / "data"))
    server = _serve(tmp_path, clock, *data)
    watcher = Watcher()
    try:
        watcher.follow(server.target)
        with channel(server.target) as ch:
            s = stub(ch).Report(
                ipb.ReportRequest(
                    incident_id="t1",
                    type=CROWD,
                    facts=facts(participants=80, local_forces_can_control=False),
                    start_events=requested(),
                )
            )
            assert (s.command_level.level.code, obligation(s, REPLY).state) == (
                "township",
                ipb.TrackedObligation.STATE_PENDING,
            )
            owed = obligation(s, REPLY).who[0].id
            _set_clock(clock, T0 + dt.timedelta(minutes=4))
            s = stub(ch).Acknowledge(ipb.AcknowledgeRequest(incident_id="t1", obligation_id=REPLY, unit=owed))
            assert obligation(s, REPLY).state == ipb.TrackedObligation.STATE_MET
        watcher.wait_for(_last_sequence(server.target, "t1"))
        server.proc.kill()  # kill -9: no drain, no goodbye
        server.stop()
        assert watcher.broken.wait(30)
        watcher.join()

        # While the service is down, the at-once duties' time (five minutes' grace) passes.
        _set_clock(clock, T0 + dt.timedelta(hours=1))
        server = _serve(tmp_path, clock, *data)
        watcher.follow(server.target)
        with channel(server.target) as ch:
            # The overdue events are written by the first clock pass after the start, marked late.
            from support.processes import wait_until

            def overdue() -> list[ipb.TrackedObligation]:
                state = stub(ch).GetIncident(ipb.GetIncidentRequest(incident_id="t1")).state
                return [o for o in state.obligations if o.state == ipb.TrackedObligation.STATE_OVERDUE]

            assert wait_until(lambda: len(overdue()) == 3, 30)
            s = stub(ch).Report(ipb.ReportRequest(incident_id="t1", facts=facts(participants=150)))
            assert (s.command_level.level.code, s.change) == ("county", ipb.LEVEL_CHANGE_ESCALATED)
            assert "county_leading_group" in [u.id for u in s.units_added]
        lowered = _cli(server.target, "set-level", "t1", "township", "--by", "总指挥", "--reason", "事态趋缓")
        assert lowered["commandLevel"]["level"]["code"] == "township"  # type: ignore[index]
        watcher.wait_for(_last_sequence(server.target, "t1"))
        server.proc.kill()
        server.stop()
        watcher.join()

        server = _serve(tmp_path, clock, *data)
        watcher.follow(server.target)
        with channel(server.target) as ch:
            s = stub(ch).Report(ipb.ReportRequest(incident_id="t1", facts=facts(participants=600)))
            assert (s.command_level.level.code, s.change, s.command_level.overridden) == (
                "city",
                ipb.LEVEL_CHANGE_ESCALATED,
                False,
            )
            s = stub(ch).Close(ipb.CloseRequest(incident_id="t1", by="镇党委、政府", reason="响应终止"))
            assert s.status == ipb.INCIDENT_STATUS_CLOSED
            record = stub(ch).GetIncident(ipb.GetIncidentRequest(incident_id="t1"))
        watcher.join()
        got = [e.sequence for e in watcher.events]
        assert got == [e.sequence for e in record.events] == list(range(1, len(got) + 1))
        assert kind(watcher.events[-1]) == "closed"
        calls = [h.kind for h in record.history if h.kind != "overdue"]
        assert calls == ["report", "acknowledge", "report", "override", "report", "close"]
        late = [e for e in record.events if kind(e) == "obligation_overdue"]
        assert len(late) == 3 and all(e.late for e in late)
        levels = [(e.to_level.code, e.changed_by) for e in record.events if kind(e) == "level_changed"]
        assert levels == [("township", "rules"), ("county", "rules"), ("township", "override"), ("city", "rules")]
    finally:
        server.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield fresh_database()


@pytest.mark.slow
def test_two_services_share_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """Two service processes on one PostgreSQL: interleaved reports to one incident from both lose nothing, each overdue fires once, and a watcher on one sees the other's events."""
    clock = tmp_path / "now.txt"
    _set_clock(clock, T0)
    store = ("--store", postgres_url)
    a = _serve(tmp_path / "a", clock, *store)
    b = _serve(tmp_path / "b", clock, *store)
    try:
        with channel(a.target) as cha, channel(b.target) as chb:
            sa, sb = stub(cha), stub(chb)
            sa.Report(
                ipb.ReportRequest(
                    incident_id="t1",
                    type=CROWD,
                    facts=facts(participants=80, local_forces_can_control=False),
                    start_events=requested(),
                )
            )
            errors: list[BaseException] = []
            versions: list[int] = []
            lock = threading.Lock()

            def hammer(st: object) -> None:
                try:
                    for _ in range(20):
                        s = st.Report(ipb.ReportRequest(incident_id="t1", facts=facts(participants=80)), timeout=30)  # type: ignore[attr-defined]
                        with lock:
                            versions.append(int(s.version))
                except BaseException as exc:  # checked below
                    errors.append(exc)

            workers = [threading.Thread(target=hammer, args=(st,)) for st in (sa, sb, sa, sb)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(120)
            assert not errors
            assert sorted(versions) == list(range(2, 82))  # 80 reports, each its own version: none lost
            record = sb.GetIncident(ipb.GetIncidentRequest(incident_id="t1"))
            assert record.state.version == 81 and len([h for h in record.history if h.kind == "report"]) == 81

            # Both replicas' clock loops look at the same due rows: each overdue fires once.
            _set_clock(clock, T0 + dt.timedelta(hours=1))
            from support.processes import wait_until

            def overdue_events() -> list[ipb.IncidentEvent]:
                events = sa.GetIncident(ipb.GetIncidentRequest(incident_id="t1")).events
                return [e for e in events if kind(e) == "obligation_overdue"]

            assert wait_until(lambda: len(overdue_events()) >= 4, 30)
            # Let both loops run several more passes: nothing fires twice.
            _set_clock(clock, T0 + dt.timedelta(hours=2))
            last = _last_sequence(a.target, "t1")
            events = _events_until(b.target, 0, last)
            assert sorted(e.obligation.id for e in overdue_events()) == sorted(
                ["neighbours_muster", "prepare_on_request", "village_first_response", REPLY]
            )
            sequences = [e.sequence for e in events]
            assert sequences == sorted(set(sequences))
            sa.Close(ipb.CloseRequest(incident_id="t1", by="x"))
            with pytest.raises(grpc.RpcError) as info:
                sb.Report(ipb.ReportRequest(incident_id="t1", facts=facts(participants=1)))
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        a.stop()
        b.stop()
