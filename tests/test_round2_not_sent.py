"""Decision lines are written before answers are sent; where the server learns that a stream's
answers may not have left, it logs their decision ids as `answers_not_confirmed_sent`.

The servicer is driven directly with a stand-in context, so when the call stops being active, and
where gRPC stops taking messages, is decided by the test, not by timing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState
from liandong.server.servicer import END, NEXT_REQUEST, ResponseServicer
from liandong.v1 import liandong_pb2 as pb
from support.messages import request
from support.metrics import sample
from support.rules import copy_demo


class Context:
    """What DetermineStream asks of a grpc.ServicerContext; `active` says, call by call, whether it is still active."""

    def __init__(self, active: Callable[[int], bool]) -> None:
        self._active = active
        self.checks = 0
        self.callbacks: list[Callable[[], None]] = []

    def is_active(self) -> bool:
        self.checks += 1
        return self._active(self.checks)

    def time_remaining(self) -> float:
        return 30.0

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def abort_with_status(self, status: Any) -> None:
        raise AssertionError(f"aborted: {status}")


@pytest.fixture(scope="module")
def servicer(
    tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime
) -> tuple[ResponseServicer, CollectorRegistry]:
    rules = tmp_path_factory.mktemp("not-sent-rules")
    copy_demo(rules)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    state = RulesState(rules, runtime, metrics, run_fixtures=False)
    assert state.reload("startup").ok
    return ResponseServicer(state, metrics), registry


def _batch(*deaths: int) -> pb.DetermineStreamRequest:
    return pb.DetermineStreamRequest(requests=[request("demo", {"deaths": d}) for d in deaths])


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_answers_evaluated_when_the_call_ends_mid_batch_are_marked_not_sent(
    servicer: tuple[ResponseServicer, CollectorRegistry],
) -> None:
    """When the call stops being active after two answers of a batch of three were evaluated, no message is sent and both decisions are marked not sent; the stream counts as CANCELLED."""
    svc, registry = servicer
    before = sample(registry, "liandong_rpc_requests_total", method="DetermineStream", code="CANCELLED")
    context = Context(lambda n: n <= 2)
    with structlog.testing.capture_logs() as logs:
        sent = list(svc.DetermineStream(iter([_batch(1, 5, 12)]), context))  # type: ignore[arg-type]
    assert sent == []
    decided = [e["decision_id"] for e in _events(logs, "decision")]
    assert len(decided) == 2
    assert [e["decision_ids"] for e in _events(logs, "answers_not_confirmed_sent")] == [decided]
    assert sample(registry, "liandong_rpc_requests_total", method="DetermineStream", code="CANCELLED") == before + 1


def test_a_message_grpc_took_but_never_came_back_after_is_marked_not_sent(
    servicer: tuple[ResponseServicer, CollectorRegistry],
) -> None:
    """When gRPC closes the stream while a message is out (it took it and did not ask for the next), that message's decisions are marked; those of earlier messages are not."""
    svc, _ = servicer
    context = Context(lambda n: True)
    with structlog.testing.capture_logs() as logs:
        stream: Iterator[bytes] = svc.DetermineStream(iter([_batch(1, 5), _batch(12), _batch(0)]), context)  # type: ignore[arg-type]
        first, second = next(stream), next(stream)
        stream.close()  # GeneratorExit at the second message's yield
    assert len(pb.DetermineStreamResponse.FromString(first).determinations) == 2 and second
    decided = [e["decision_id"] for e in _events(logs, "decision")]
    assert len(decided) == 3
    assert [e["decision_ids"] for e in _events(logs, "answers_not_confirmed_sent")] == [decided[2:]]


def test_a_stream_that_ends_normally_marks_nothing_nor_does_one_closed_while_it_waits(
    servicer: tuple[ResponseServicer, CollectorRegistry],
) -> None:
    """A stream whose every message was taken marks nothing, whether its requests end (counted OK) or the call ends while it waits for the next one (counted CANCELLED): its answers were all handed over."""
    svc, registry = servicer
    for cancelled in (False, True):
        before = {
            c: sample(registry, "liandong_rpc_requests_total", method="DetermineStream", code=c)
            for c in ("OK", "CANCELLED")
        }
        context = Context(lambda n: True)
        with structlog.testing.capture_logs() as logs:
            stream = svc._stream(context)  # type: ignore[arg-type]
            sent = []
            item = next(stream)
            for batch in (_batch(1), _batch(5, 12)):
                assert item is NEXT_REQUEST
                sent.append(stream.send(batch))
                item = next(stream)
            assert item is NEXT_REQUEST and len(sent) == 2
            if cancelled:
                stream.close()  # what the asyncio handler does when its task is cancelled at a read
            else:
                with pytest.raises(StopIteration):
                    stream.send(END)
        marked = [e["decision_ids"] for e in _events(logs, "answers_not_confirmed_sent")]
        assert marked == []
        code = "CANCELLED" if cancelled else "OK"
        after = sample(registry, "liandong_rpc_requests_total", method="DetermineStream", code=code)
        assert after == before[code] + 1
