"""The asyncio server: ResponseService answers on the event loop while blocking calls (incidents)
wait in the --max-workers pool, and streams hold no thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from liandong.engine.runtime import DurableRuntime
from liandong.server.bridge import BlockingCalls, CallContext
from liandong.server.incidents import IncidentServicer
from liandong.v1 import incidents_pb2 as ipb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.incidents import ManualClock, facts, incident_service, requested, stub
from support.messages import HeldStream, request
from support.servers import channel, target

BOUND = 30.0  # seconds: the most any wait below may take


@pytest.fixture
def held_list(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """ListIncidents held, once entered, until the test releases it (it blocks its pool thread)."""
    entered, release = threading.Event(), threading.Event()
    original = IncidentServicer.ListIncidents

    def held(self: IncidentServicer, request: Any, context: grpc.ServicerContext) -> Any:
        entered.set()
        release.wait(BOUND)
        return original(self, request, context)

    monkeypatch.setattr(IncidentServicer, "ListIncidents", held)  # before the service registers it
    try:
        yield entered, release
    finally:
        release.set()


def test_blocked_incident_call_and_determine_are_served_at_once(
    runtime: DurableRuntime, held_list: tuple[threading.Event, threading.Event]
) -> None:
    """While an incident call blocks in the pool (its only thread), Determine and DetermineStream are answered on the loop, and the incident call then completes."""
    entered, release = held_list
    with (
        incident_service(runtime, ManualClock(), max_workers=1) as svc,
        channel(target(svc)) as ch,
        futures.ThreadPoolExecutor(max_workers=1) as caller,
    ):
        listing = caller.submit(stub(ch).ListIncidents, ipb.ListIncidentsRequest(), timeout=BOUND)
        assert entered.wait(BOUND)
        response = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        answer = response.Determine(request("fire", {"deaths": 3}), timeout=BOUND)
        assert answer.level.code
        assert not listing.done()  # still held: the Determine did not wait for it
        release.set()
        assert list(listing.result(BOUND).incidents) == []


def test_open_streams_do_not_hold_threads(runtime: DurableRuntime) -> None:
    """With one pool thread, five DetermineStreams held open mid-stream do not stop Determine, an incident call, or a sixth stream."""
    with incident_service(runtime, ManualClock(), max_workers=1) as svc, channel(target(svc)) as ch:
        response = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        held = [HeldStream(response, timeout=BOUND) for _ in range(5)]
        try:
            for h in held:
                h.send(request("fire", {"deaths": 1}))
            assert all(h.first.wait(BOUND) and h.answers for h in held)
            assert response.Determine(request("fire", {"deaths": 3}), timeout=BOUND).level.code
            assert list(stub(ch).ListIncidents(ipb.ListIncidentsRequest(), timeout=BOUND).incidents) == []
            sixth = HeldStream(response, timeout=BOUND)
            sixth.send(request("fire", {"deaths": 1}))
            assert sixth.first.wait(BOUND) and sixth.answers
            sixth.close(BOUND)
        finally:
            for h in held:
                h.close(BOUND)
        assert all(h.error is None for h in held)


def test_cancelled_watch_frees_its_thread(runtime: DurableRuntime) -> None:
    """With one pool thread, a WatchIncidents waiting for events, once cancelled, gives its thread back: the next incident call is answered."""
    with incident_service(runtime, ManualClock(), max_workers=1) as svc, channel(target(svc)) as ch:
        incidents = stub(ch)
        incidents.Report(
            ipb.ReportRequest(
                incident_id="w1",
                type="mass_incident",
                facts=facts(participants=80, local_forces_can_control=False),
                reporter="村委会",
                start_events=requested(),
            ),
            timeout=BOUND,
        )
        watch = incidents.WatchIncidents(ipb.WatchIncidentsRequest(), timeout=BOUND)
        assert next(watch).incident_id == "w1"  # the watch has sent what there was and waits in the pool
        watch.cancel()
        with pytest.raises(grpc.RpcError) as caught:
            next(watch)
        assert caught.value.code() == grpc.StatusCode.CANCELLED
        listed = incidents.ListIncidents(ipb.ListIncidentsRequest(), timeout=BOUND).incidents
        assert [i.incident_id for i in listed] == ["w1"]


def test_health_watch_open_at_stop_gives_its_thread_back(runtime: DurableRuntime) -> None:
    """A grpc.health Watch still open when the service stops is ended with it: its pool thread returns, so the process can exit."""
    before = {t for t in threading.enumerate() if t.name.startswith("rpc")}
    with incident_service(runtime, ManualClock(), max_workers=1) as svc, channel(target(svc)) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=BOUND)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING  # it now waits in the pool thread
        pool = {t for t in threading.enumerate() if t.name.startswith("rpc")} - before
        assert len(pool) == 1
    for thread in pool:  # the service stopped (grace 0) with the watch open
        thread.join(BOUND)
        assert not thread.is_alive(), "the watch still holds its pool thread"


def test_a_callback_added_after_the_call_ended_runs_at_once() -> None:
    """A handler that registers its callback after its call has ended (and ignores add_callback's answer, as grpc_health does) still sees it run, once."""
    ctx = CallContext(None)  # type: ignore[arg-type]  # the grpc.aio context is not touched here
    early: list[str] = []
    assert ctx.add_callback(lambda: early.append("early"))
    ctx.end()
    ctx.end()
    assert early == ["early"]
    late: list[str] = []
    assert ctx.add_callback(lambda: late.append("late"))
    assert late == ["late"]


def test_closing_the_blocking_calls_ends_a_call_the_loop_left_open() -> None:
    """When the server stops, a call whose task the loop dropped without ending it is ended by BlockingCalls.close(): the handler waiting in the pool for its end callback returns."""
    calls = BlockingCalls(futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-blocking"))
    ctx = calls.open(None)  # type: ignore[arg-type]  # the grpc.aio context is not touched here
    woken = threading.Event()
    waiting = threading.Event()

    def handler() -> bool:  # waits as grpc_health's Watch does: until the call's end wakes it
        ctx.add_callback(woken.set)
        waiting.set()
        return woken.wait(BOUND)

    result = calls.pool.submit(handler)
    assert waiting.wait(BOUND)
    assert not result.done()
    calls.close()
    assert result.result(BOUND) is True


def test_work_handed_to_the_pool_after_it_closed_runs_in_place() -> None:
    """A handler's generator that must be closed after the pool shut down (its task ended after the server stopped) is closed at once, not lost to 'cannot schedule new futures'."""
    calls = BlockingCalls(futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-blocking"))
    ran: list[str] = []
    calls.close()
    calls.later(ran.append, "after")
    assert ran == ["after"]
