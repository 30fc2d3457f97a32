"""IncidentService in tests: a Service in this process with a clock the test moves, stubs, facts."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from liandong.v1 import incidents_pb2 as ipb
from liandong.v1 import incidents_pb2_grpc as ipb_grpc
from support.servers import make_config

T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
RULES = Path(__file__).resolve().parents[2] / "rules"


class ManualClock:
    """The service's `now`: moved by the test, never by waiting."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.moment = start
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self.moment

    def advance(self, **delta: float) -> dt.datetime:
        with self._lock:
            self.moment += dt.timedelta(**delta)
            return self.moment


@contextlib.contextmanager
def incident_service(
    runtime: DurableRuntime, clock: ManualClock, registry: CollectorRegistry | None = None, **flags: object
) -> Iterator[Service]:
    """A started Service over the bundled rules with the test's clock; its clock loop fires nothing
    by itself: tests fire due clocks with svc.clocks.run_once() after moving the clock."""
    flags.setdefault("clock_interval", 0.05)
    svc = Service(
        make_config(RULES, **flags),
        registry=registry if registry is not None else CollectorRegistry(),
        runtime=runtime,
        now=clock,
    )
    svc.start()
    if svc.clocks is not None:
        svc.clocks.manual = True
    try:
        yield svc
    finally:
        svc.stop(0)


def stub(ch: grpc.Channel) -> ipb_grpc.IncidentServiceStub:
    return ipb_grpc.IncidentServiceStub(ch)  # type: ignore[no-untyped-call]


def facts(**values: object) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)  # type: ignore[arg-type]
    return out


def kind(event: ipb.IncidentEvent) -> str:
    return ipb.IncidentEvent.Kind.Name(event.kind).lower()


def obligation(state: ipb.IncidentState, oid: str) -> ipb.TrackedObligation:
    return next(o for o in state.obligations if o.id == oid)


def requested(at: dt.datetime = T0) -> dict[str, timestamp_pb2.Timestamp]:
    """`start_events` of a report that brings the neighbour's linkage request (000 第五篇 三、2: the
    20-minute reply runs from it)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return {"request_received": stamp}
