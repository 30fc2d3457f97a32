"""How a DetermineStream that its caller cancels is counted, repeated until the race grpc leaves is hit.

A caller that cancels while the server waits for its next request can make grpc's sync server end
the request iterator (as if the caller had half-closed) before it records the cancel
(grpc/grpc#33038). The servicer counts a stream that ended normally only once grpc has terminated
the call, from grpc core's own cancelled flag.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import answers_of, batches, request
from support.metrics import sample
from support.processes import wait_until
from support.rules import copy_demo
from support.servers import LOOPBACK, channel, running, target

ROUNDS = 40  # the race showed in about one run in three of the whole suite; 40 tries make it show alone
BOUND = 10.0


@pytest.fixture(scope="module")
def streams(
    tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime
) -> Iterator[tuple[CollectorRegistry, pb_grpc.ResponseServiceStub]]:
    rules = tmp_path_factory.mktemp("cancel-rules")
    copy_demo(rules)
    registry = CollectorRegistry()
    with running(rules, runtime, registry, metrics_listen="") as svc, channel(target(svc)) as ch:
        yield registry, pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]


def _counts(registry: CollectorRegistry) -> dict[str, float]:
    return {
        c: sample(registry, "liandong_rpc_requests_total", method="DetermineStream", code=c)
        for c in ("OK", "CANCELLED", "DEADLINE_EXCEEDED")
    }


def test_every_cancelled_stream_is_counted_cancelled(
    streams: tuple[CollectorRegistry, pb_grpc.ResponseServiceStub],
) -> None:
    """Each of 40 streams cancelled by the caller while the server waits for its next request is counted once, CANCELLED, never OK."""
    registry, stub = streams
    before = _counts(registry)
    for done in range(1, ROUNDS + 1):
        hold = threading.Event()

        def incidents(hold: threading.Event = hold) -> Iterator[pb.DetermineRequest]:
            yield request("demo", {"deaths": 1})
            hold.wait(BOUND)  # never half-closes: the stream can only end by the cancel

        call = stub.DetermineStream(batches(incidents()), timeout=30)
        try:
            assert next(answers_of(call)).level.code == "IV"
            call.cancel()
            assert wait_until(
                lambda done=done: sum(_counts(registry).values()) - sum(before.values()) >= done, BOUND
            ), (
                done,
                _counts(registry),
            )
        finally:
            hold.set()
    after = _counts(registry)
    assert {c: after[c] - before[c] for c in after} == {"OK": 0, "CANCELLED": ROUNDS, "DEADLINE_EXCEEDED": 0}


def test_every_stream_that_ends_normally_is_counted_ok(
    streams: tuple[CollectorRegistry, pb_grpc.ResponseServiceStub],
) -> None:
    """Each of 40 streams whose caller half-closes and reads every answer is counted once, OK."""
    registry, stub = streams
    before = _counts(registry)
    for done in range(1, ROUNDS + 1):
        got = list(
            answers_of(stub.DetermineStream(batches([request("demo", {"deaths": d}) for d in (1, 5)]), timeout=30))
        )
        assert [a.level.code for a in got] == ["IV", "III"]
        assert wait_until(lambda done=done: _counts(registry)["OK"] - before["OK"] >= done, BOUND), (
            done,
            _counts(registry),
        )
    after = _counts(registry)
    assert {c: after[c] - before[c] for c in after} == {"OK": ROUNDS, "CANCELLED": 0, "DEADLINE_EXCEEDED": 0}


def test_grpc_reports_the_cancelled_flag_the_servicer_reads() -> None:
    """The installed grpc still keeps core's cancelled flag where the servicer reads it: False for a half-closed call, True for a cancelled one."""
    from liandong.server.servicer import _core_cancelled

    seen: dict[str, bool | None] = {}
    terminated = {"normal": threading.Event(), "cancelled": threading.Event()}
    reading = threading.Event()

    def echo(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        name = dict(context.invocation_metadata())["name"]

        def record() -> None:
            seen[str(name)] = _core_cancelled(context)
            terminated[str(name)].set()

        context.add_callback(record)
        for item in requests:
            reading.set()
            yield item

    handler = grpc.method_handlers_generic_handler("t.Echo", {"Echo": grpc.stream_stream_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    server.start()
    hold = threading.Event()
    try:
        with channel(f"{LOOPBACK}:{port}") as ch:
            method = ch.stream_stream("/t.Echo/Echo")
            assert list(method(iter([b"a", b"b"]), metadata=(("name", "normal"),), timeout=BOUND)) == [b"a", b"b"]

            def open_ended() -> Iterator[bytes]:
                yield b"a"
                hold.wait(BOUND)

            call = method(open_ended(), metadata=(("name", "cancelled"),), timeout=BOUND)
            assert next(call) == b"a" and reading.is_set()
            call.cancel()
            assert all(e.wait(BOUND) for e in terminated.values())
    finally:
        hold.set()
        server.stop(0)
    assert seen == {"normal": False, "cancelled": True}
