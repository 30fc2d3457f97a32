"""DetermineStream's own work per message: the response joined with one copy of each answer, and
the decision ids of a request message made from one read of the random source."""

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
from liandong.server.servicer import ResponseServicer, decision_ids
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


def counting(chunks: list[bytes]) -> Callable[[int], bytes]:
    """A random source that hands out `chunks` joined, and records each read's size."""
    reads: list[int] = []

    def read(n: int) -> bytes:
        reads.append(n)
        return b"".join(chunks)[:n]

    read.reads = reads  # type: ignore[attr-defined]
    return read


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


def test_decision_ids_are_uuid4_texts_of_the_random_bytes() -> None:
    """Each id is what str(uuid.UUID(bytes=..., version=4)) writes for its 16 random bytes, in order, from a single read of the source."""
    chunks = [bytes([i] * 16) for i in (0x00, 0xFF, 0x5A)] + [bytes(range(16))]
    source = counting(chunks)
    ids = decision_ids(len(chunks), source)
    assert ids == [str(uuid.UUID(bytes=c, version=4)) for c in chunks]
    assert source.reads == [16 * len(chunks)]  # type: ignore[attr-defined]
    assert decision_ids(0, counting([])) == []


def test_decision_ids_from_the_os_are_distinct_version_4_uuids() -> None:
    """Ids from the OS's random source parse as version 4 RFC 4122 UUIDs that print back the same, none repeated."""
    ids = decision_ids(1000)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == i for u, i in zip(parsed, ids, strict=True))
    assert len(set(ids)) == 1000


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
