"""DetermineStream's own work per message: the response joined with one copy of each answer, and
each answer carrying its decision line's id."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server import answers
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState
from liandong.server.servicer import ResponseServicer
from liandong.v1 import liandong_pb2 as pb
from support.messages import request
from support.rules import copy_demo


class Context:
    """What DetermineStream asks of a grpc.ServicerContext, for a call that stays active."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 30.0

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return True

    def abort_with_status(self, status: Any) -> None:
        raise AssertionError(f"aborted: {status}")


def test_stream_response_is_the_bytes_protobuf_writes() -> None:
    """A stream response joined from answers of 1-, 2- and 3-byte lengths is byte-identical to protobuf's serialization of the same message."""
    dets = [pb.Determination(decision_id=f"d{i}", summary="x" * size) for i, size in enumerate((0, 10, 200, 20_000))]
    wires = [d.SerializeToString() for d in dets]
    assert [len(w) < 128 for w in wires] == [True, True, False, False]
    assert len(wires[-1]) >= 16_384  # a length of three varint bytes
    joined = answers.stream_response(wires)
    assert joined == pb.DetermineStreamResponse(determinations=dets).SerializeToString()
    assert answers.stream_response(iter(wires)) == joined  # any iterable, read once
    assert answers.stream_response([]) == b""


@pytest.fixture(scope="module")
def servicer(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> ResponseServicer:
    rules = tmp_path_factory.mktemp("stream-path-rules")
    copy_demo(rules)
    metrics = Metrics(CollectorRegistry())
    state = RulesState(rules, runtime, metrics, run_fixtures=False)
    assert state.reload("startup").ok
    return ResponseServicer(state, metrics)


def test_stream_answers_carry_their_decision_lines_ids(servicer: ResponseServicer) -> None:
    """Every answer of a stream carries a distinct version 4 decision id, the id of its decision line, lines and answers in the same order."""
    batches = [
        pb.DetermineStreamRequest(requests=[request("demo", {"deaths": d}, incident_id=f"i{b}-{d}") for d in range(5)])
        for b in range(3)
    ]
    with structlog.testing.capture_logs() as logs:
        sent = list(servicer.DetermineStream(iter(batches), Context()))  # type: ignore[arg-type]
    got = [d for message in sent for d in pb.DetermineStreamResponse.FromString(message).determinations]
    lines = [e for e in logs if e["event"] == "decision"]
    assert [d.incident_id for d in got] == [f"i{b}-{d}" for b in range(3) for d in range(5)]
    assert [d.decision_id for d in got] == [e["decision_id"] for e in lines]
    assert len({d.decision_id for d in got}) == 15
    assert all(uuid.UUID(d.decision_id).version == 4 for d in got)
