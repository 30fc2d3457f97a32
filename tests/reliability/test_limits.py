"""Explicit limits: message size, facts count, stream length, concurrency and deadlines each end a
call with a documented code, and the service keeps answering afterwards."""

from __future__ import annotations

import re
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from liandong.engine.descriptor import MAX_FACTS
from liandong.engine.runtime import DurableRuntime
from liandong.server import servicer
from liandong.server.app import Service
from liandong.server.config import Config
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import ROOT
from support.messages import HeldStream, answers_of, batches, request
from support.metrics import sample
from support.processes import wait_until
from support.servers import LOOPBACK, running
from support.status import details

BOUND = 30.0  # seconds: the most any wait below may take


def stub_for(svc: Service) -> tuple[grpc.Channel, pb_grpc.ResponseServiceStub]:
    channel = grpc.insecure_channel(f"{LOOPBACK}:{svc.port}")
    return channel, pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]


def still_answers(stub: pb_grpc.ResponseServiceStub) -> bool:
    return bool(stub.Determine(request("demo", {"deaths": 3}), timeout=10).level.code == "III")


def held_open(stub: pb_grpc.ResponseServiceStub) -> HeldStream:
    """A DetermineStream that has sent one request and is held open until closed."""
    held = HeldStream(stub, timeout=BOUND)
    held.send(request("demo", {"deaths": 1}))
    return held


def test_oversized_message_is_resource_exhausted(rules_dir: Path, runtime: DurableRuntime) -> None:
    """A request over --max-message-bytes ends RESOURCE_EXHAUSTED; one under it is answered."""
    with running(rules_dir, runtime, max_message_bytes=64 * 1024) as svc:
        channel, stub = stub_for(svc)
        with channel:
            big = request("demo", {"note": "长" * 40_000})  # ~120 KB of UTF-8
            with pytest.raises(grpc.RpcError) as caught:
                stub.Determine(big, timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(grpc.RpcError) as under:  # under the limit: the facts are checked instead
                stub.Determine(request("demo", {"note": "长" * 10_000}), timeout=10)
            assert under.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert details(under.value).fields() == [("incident.facts.note", "too_long")]
            assert still_answers(stub)


def test_answer_over_the_message_limit_is_refused_not_counted_ok(runtime: DurableRuntime) -> None:
    """An answer larger than --max-message-bytes ends RESOURCE_EXHAUSTED in Determine and DetermineStream, counted so, with no decision recorded; a smaller answer still goes."""
    with running(
        ROOT / "rules", runtime, max_message_bytes=8192
    ) as svc:  # the small answer (~6 kB) fits, the large (~17 kB) does not
        channel, stub = stub_for(svc)
        with channel:
            large = request(
                "fire", {"deaths": 3, "serious_injuries": 12, "hazardous_materials": True}
            )  # a ~17 kB answer
            with pytest.raises(grpc.RpcError) as unary:
                stub.Determine(large, timeout=BOUND)
            assert unary.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-message-bytes" in (unary.value.details() or "")
            small = request("mass_incident", {"participants": 10})
            small.incident.id = "small"
            with pytest.raises(grpc.RpcError) as streamed:
                list(answers_of(stub.DetermineStream(batches([small, large, small], size=3), timeout=BOUND)))
            assert streamed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert [a.incident_id for a in answers_of(stub.DetermineStream(batches([small]), timeout=BOUND))] == [
                "small"
            ]
        assert sample(svc.registry, "liandong_rpc_requests_total", method="Determine", code="RESOURCE_EXHAUSTED") == 1
        assert sample(svc.registry, "liandong_rpc_requests_total", method="Determine", code="OK") == 0
        assert (
            sample(svc.registry, "liandong_rpc_requests_total", method="DetermineStream", code="RESOURCE_EXHAUSTED")
            == 1
        )
        decisions: dict[str, float] = {}
        for metric in svc.registry.collect():
            for s in metric.samples:
                if s.name == "liandong_decisions_total":
                    decisions[s.labels["ruleset"]] = decisions.get(s.labels["ruleset"], 0) + s.value
        assert decisions == {"township-mass-incident": 2}  # the refused fire answers were never decisions


def test_too_many_facts_is_one_violation(rules_dir: Path, runtime: DurableRuntime) -> None:
    """More than MAX_FACTS facts are one INVALID_ARGUMENT violation; MAX_FACTS wrong ones are INVALID_ARGUMENT with as many violations as fit a trailer."""
    with running(rules_dir, runtime) as svc:
        channel, stub = stub_for(svc)
        with channel:
            with pytest.raises(grpc.RpcError) as over:
                stub.Determine(request("demo", {f"f{i}": i for i in range(MAX_FACTS + 1)}), timeout=10)
            assert over.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert details(over.value).fields() == [("incident.facts.facts", "too_many")]
            with pytest.raises(grpc.RpcError) as at_limit:
                stub.Determine(request("demo", {f"f{i}": i for i in range(MAX_FACTS)}), timeout=10)
            assert at_limit.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # not a trailer too big for the client
            reasons = details(at_limit.value).fields()
            assert 10 <= len(reasons) < MAX_FACTS and {r for _, r in reasons} == {"unknown_field"}
            assert f"[{len(reasons)} of {MAX_FACTS} violations in the details]" in (at_limit.value.details() or "")
            assert still_answers(stub)


def test_stream_length_is_limited(rules_dir: Path, runtime: DurableRuntime) -> None:
    """A stream longer than --max-stream-requests gets its first N answers, then RESOURCE_EXHAUSTED; N requests pass."""
    with running(rules_dir, runtime, max_stream_requests=5) as svc:
        channel, stub = stub_for(svc)
        with channel:
            answers: list[pb.Determination] = []
            with pytest.raises(grpc.RpcError) as caught:
                for answer in answers_of(
                    stub.DetermineStream(batches([request("demo", {"deaths": d}) for d in range(8)]), timeout=BOUND)
                ):
                    answers.append(answer)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "at most 5 requests" in (caught.value.details() or "")
            assert [a.level.code for a in answers] == ["IV", "IV", "IV", "III", "III"]
            exact = list(
                answers_of(
                    stub.DetermineStream(batches([request("demo", {"deaths": d}) for d in range(5)]), timeout=BOUND)
                )
            )
            assert len(exact) == 5
            assert (
                sample(svc.registry, "liandong_rpc_requests_total", method="DetermineStream", code="RESOURCE_EXHAUSTED")
                == 1
            )


def test_concurrency_is_limited(rules_dir: Path, runtime: DurableRuntime) -> None:
    """With --max-concurrent-rpcs 2 and two calls open, a third is refused RESOURCE_EXHAUSTED at once; later calls pass."""
    with running(rules_dir, runtime, max_concurrent_rpcs=2) as svc:
        channel, stub = stub_for(svc)
        with channel:
            held = [held_open(stub) for _ in range(2)]
            try:
                assert all(h.first.wait(BOUND) and h.answers for h in held)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Determine(request("demo", {"deaths": 3}), timeout=10)
                assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            finally:
                for h in held:
                    h.close(BOUND)
            assert all(h.error is None and len(h.answers) == 1 for h in held)
            assert wait_until(lambda: still_answers_quietly(stub), BOUND)


def still_answers_quietly(stub: pb_grpc.ResponseServiceStub) -> bool:
    try:
        return still_answers(stub)
    except grpc.RpcError:
        return False


def test_call_queued_past_its_deadline_is_never_evaluated(
    rules_dir: Path, runtime: DurableRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the event loop busy evaluating another call, a Determine whose deadline passes while it waits is not evaluated later."""
    entered, release = threading.Event(), threading.Event()
    original = servicer.ResponseServicer._determine

    def held(self: servicer.ResponseServicer, serving: Any, req: Any) -> Any:
        if req.incident.id == "hold":  # evaluations run on the loop: while this one waits, nothing else runs
            entered.set()
            release.wait(BOUND)
        return original(self, serving, req)

    monkeypatch.setattr(servicer.ResponseServicer, "_determine", held)
    with running(rules_dir, runtime) as svc:
        channel, stub = stub_for(svc)
        with channel, futures.ThreadPoolExecutor(max_workers=1) as caller:
            first = caller.submit(stub.Determine, request("demo", {"deaths": 1}, incident_id="hold"), timeout=BOUND)
            try:
                assert entered.wait(BOUND)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Determine(request("demo", {"deaths": 30}), timeout=0.3)
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            finally:
                release.set()
            assert first.result(BOUND).level.code == "IV"
            assert still_answers(stub)  # the loop is free again and has run whatever was queued
            assert (
                sample(svc.registry, "liandong_decisions_total", ruleset="demo", version="2024.1", level="II") == 0
            )  # deaths=30 was never decided
            assert sample(svc.registry, "liandong_rpc_requests_total", method="Determine", code="OK") == 2


def _ld(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2); lengths here stay under 2**28."""
    length = len(payload)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([(field << 3) | 2]) + bytes(varint) + payload


def nested_request(depth: int) -> bytes:
    """A DetermineRequest whose fact `deaths` is a list nested `depth` deep, built as raw bytes
    (the Python protobuf runtime refuses to build it, a server must still refuse it properly)."""
    value = b"\x11" + bytes(8)  # Value.number_value (field 2, fixed64) = 0.0
    for _ in range(depth):
        value = _ld(6, _ld(1, value))  # Value.list_value { values: [value] }
    entry = _ld(1, b"deaths") + _ld(2, value)
    incident = _ld(2, b"demo") + _ld(3, _ld(1, entry))
    return _ld(1, incident)


@pytest.mark.parametrize("depth", [0, 40, 60, 2000])
def test_nesting_deeper_than_protobuf_allows_is_invalid_argument(
    depth: int, rules_dir: Path, runtime: DurableRuntime
) -> None:
    """Facts nested past protobuf's depth limit are INVALID_ARGUMENT with a BadRequest (not INTERNAL); shallower ones are checked as facts."""
    with running(rules_dir, runtime) as svc:
        channel, stub = stub_for(svc)
        with channel:
            raw = channel.unary_unary(
                "/liandong.v1.ResponseService/Determine",
                request_serializer=None,
                response_deserializer=pb.Determination.FromString,
            )
            if depth == 0:
                assert raw(nested_request(0), timeout=10).level.code == "IV"  # the hand-built encoding is right
                return
            with pytest.raises(grpc.RpcError) as caught:
                raw(nested_request(depth), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            fields = details(caught.value).fields()
            assert fields in ([("incident.facts.deaths", "wrong_type")], [("request", "invalid")]), fields
            if depth >= 60:
                assert fields == [("request", "invalid")] and "cannot be decoded" in (caught.value.details() or "")
            assert still_answers(stub)


def test_undecodable_bytes_are_invalid_argument(rules_dir: Path, runtime: DurableRuntime) -> None:
    """Bytes that are not a DetermineRequest at all are INVALID_ARGUMENT, for Determine and for GetRuleSet."""
    with running(rules_dir, runtime) as svc:
        channel, stub = stub_for(svc)
        with channel:
            for method in ("Determine", "GetRuleSet"):
                raw = channel.unary_unary(
                    f"/liandong.v1.ResponseService/{method}", request_serializer=None, response_deserializer=None
                )
                with pytest.raises(grpc.RpcError) as caught:
                    raw(b"\x0a\xff\xff\xff\xff\x0f garbage", timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert still_answers(stub)


def test_limits_are_documented() -> None:
    """The operations manual's Limits section names every limit, its default and the code a caller gets."""
    manual = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = manual[manual.index("## Limits") :]
    section = section[: section.index("\n## ", 5)]
    defaults = Config()
    for text in (
        "--max-message-bytes",
        "RESOURCE_EXHAUSTED",
        f"{MAX_FACTS}",
        "--max-stream-requests",
        str(defaults.max_stream_requests),
        "--max-concurrent-rpcs",
        str(defaults.max_concurrent_rpcs),
        "DEADLINE_EXCEEDED",
        "INVALID_ARGUMENT",
        "64 levels",
    ):
        assert text in section, text
    assert re.search(r"deadline", section, re.IGNORECASE)


def test_a_fact_value_with_no_kind_is_refused_not_ignored(rules_dir: Path, runtime: DurableRuntime) -> None:
    """A Struct value with none of its kinds set (how a client misspelling `numberValue` sends it) is INVALID_ARGUMENT; null stays 'absent'."""
    with running(rules_dir, runtime) as svc:
        channel, stub = stub_for(svc)
        with channel:
            malformed = request("demo", {"hazmat": True})
            malformed.incident.facts.fields["deaths"].Clear()  # an entry whose Value has no kind
            with pytest.raises(grpc.RpcError) as caught:
                stub.Determine(malformed, timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert details(caught.value).fields() == [("incident.facts.deaths", "wrong_type")]
            assert "no kind set" in (caught.value.details() or "")
            null = stub.Determine(request("demo", {"deaths": None, "hazmat": True}), timeout=10)
            assert null.level.code == "IV"  # null is absent: the default 0 deaths applies
