"""End to end: DetermineStream's batches (DetermineStreamRequest / DetermineStreamResponse) against a
real server on a free loopback port, through the raw stub and through Client.determine_many."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from liandong.client import Client, InvalidIncident
from liandong.engine.runtime import DurableRuntime
from liandong.server import servicer
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from liandong.wire import MAX_BATCH
from support.messages import batches, request
from support.metrics import sample
from support.processes import wait_until
from support.servers import channel, running, target
from support.status import Details, details

BOUND = 30.0  # seconds: the most any call or wait below may take
STREAM = "/liandong.v1.ResponseService/DetermineStream"


RULE_SETS = ("fire-linkage", "demo", "quiet")  # the module's rules directory (conftest.py `rules_dir`)


@pytest.fixture(scope="module")
def limited(rules_dir: Path, runtime: DurableRuntime) -> Iterator[Service]:
    """A service that allows 10 requests per stream."""
    with running(rules_dir, runtime, metrics_listen="", max_stream_requests=10) as svc:
        yield svc


def message(reqs: Sequence[pb.DetermineRequest]) -> pb.DetermineStreamRequest:
    return pb.DetermineStreamRequest(requests=reqs)


def demo(n: int, **fields: Any) -> pb.DetermineRequest:
    """A valid demo incident whose answer varies with n."""
    return request("demo", {"deaths": (n * 7) % 23, "hazmat": n % 3 == 0}, incident_id=f"d{n}", **fields)


def without_id(det: pb.Determination) -> pb.Determination:
    copy = pb.Determination()
    copy.CopyFrom(det)
    copy.ClearField("decision_id")
    return copy


def determine_each(stub: pb_grpc.ResponseServiceStub, reqs: Sequence[pb.DetermineRequest]) -> list[pb.Determination]:
    """Determine's answer to each request, without its decision id."""
    return [without_id(stub.Determine(r, timeout=BOUND)) for r in reqs]


def refusal(stub: pb_grpc.ResponseServiceStub, req: pb.DetermineRequest) -> Details:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Determine(req, timeout=BOUND)
    return details(caught.value)


def decided(svc: Service) -> float:
    """Every determination the service has made so far."""
    return sum(
        s.value
        for metric in svc.registry.collect()
        if metric.name == "liandong_decisions"
        for s in metric.samples
        if s.name == "liandong_decisions_total"
    )


def stream(
    stub: pb_grpc.ResponseServiceStub, messages: Sequence[pb.DetermineStreamRequest]
) -> tuple[list[pb.DetermineStreamResponse], grpc.RpcError | None]:
    """Every response message of a stream of these messages, and the error it ended with (None if OK)."""
    responses: list[pb.DetermineStreamResponse] = []
    try:
        for response in stub.DetermineStream(iter(messages), timeout=BOUND):
            responses.append(response)
    except grpc.RpcError as error:
        return responses, error
    return responses, None


# -- batches through the raw stub ----------------------------------------------------------------------------
def test_batches_of_different_sizes_get_one_response_each_with_determines_answers(
    stub: pb_grpc.ResponseServiceStub,
) -> None:
    """Batches of 1, 7, 100 and 3 requests get one response each with as many answers, in request order, equal to Determine's answers but for the decision id."""
    sizes = (1, 7, 100, 3)
    reqs = [demo(n, explain=n % 10 == 4) for n in range(sum(sizes))]
    reqs[0] = request("fire", {"deaths": 3}, incident_id="fire-first")
    reqs[3] = request("quiet", {"deaths": 0}, incident_id="quiet-in-second")
    reqs[5] = request("fire", {"deaths": 12, "hazardous_materials": True}, incident_id="fire-in-second", explain=True)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    messages = [message(reqs[s : s + n]) for s, n in zip(starts, sizes, strict=True)]
    responses, error = stream(stub, messages)
    assert error is None
    assert [len(r.determinations) for r in responses] == list(sizes)
    got = [a for r in responses for a in r.determinations]
    assert [a.incident_id for a in got] == [r.incident.id for r in reqs]
    assert [without_id(a) for a in got] == determine_each(stub, reqs)
    assert all(a.decision_id for a in got) and len({a.decision_id for a in got}) == len(reqs)
    assert [bool(a.unmatched_rules) for a in got] == [r.explain for r in reqs]  # explain answers came explained


def test_empty_batch_gets_one_empty_response(stub: pb_grpc.ResponseServiceStub) -> None:
    """An empty batch is answered by one empty response message, alone or between other batches, and the stream ends OK."""
    responses, error = stream(stub, [message([])])
    assert error is None and [len(r.determinations) for r in responses] == [0]
    responses, error = stream(stub, [message([]), message([demo(1), demo(2)]), message([])])
    assert error is None and [len(r.determinations) for r in responses] == [0, 2, 0]
    assert [a.incident_id for a in responses[1].determinations] == ["d1", "d2"]


REFUSED = {
    "invalid facts": request("demo", {"deaths": -1, "unknown_fact": 1}, incident_id="bad"),
    "unknown incident type": request("no-such-type", {}, incident_id="bad"),
    "unknown rule set": request("demo", {}, incident_id="bad", ruleset="nope"),
    "unknown version": request("demo", {}, incident_id="bad", version="1999.1"),
    "no incident": pb.DetermineRequest(ruleset="demo"),
}


@pytest.mark.parametrize("bad", list(REFUSED.values()), ids=list(REFUSED))
def test_refusal_mid_batch_sends_the_answers_before_it_then_determines_status(
    server: Service, stub: pb_grpc.ResponseServiceStub, bad: pb.DetermineRequest
) -> None:
    """A refused request in the middle of the second batch: the first batch's response, a response with only the answers before it in its batch, then Determine's status and details for it; nothing after it is evaluated."""
    first = [demo(n) for n in range(3)]
    second = [demo(3), demo(4), bad, demo(5)]
    third = [demo(6), demo(7)]
    want = refusal(stub, bad)
    before = decided(server)
    responses, error = stream(stub, [message(first), message(second), message(third)])
    assert decided(server) - before == 5
    assert [[a.incident_id for a in r.determinations] for r in responses] == [["d0", "d1", "d2"], ["d3", "d4"]]
    assert error is not None
    assert details(error) == want
    assert want.code != grpc.StatusCode.OK and "Traceback" not in want.message


def test_refusal_first_in_its_batch_sends_no_empty_response(stub: pb_grpc.ResponseServiceStub) -> None:
    """A refused request that is the first of its batch ends the stream with its status right after the earlier batches' responses, with no response for its batch."""
    bad = REFUSED["invalid facts"]
    responses, error = stream(stub, [message([demo(0), demo(1)]), message([bad, demo(2)])])
    assert [[a.incident_id for a in r.determinations] for r in responses] == [["d0", "d1"]]
    assert error is not None and details(error) == refusal(stub, bad)


def test_batch_over_1000_requests_is_invalid_argument(server: Service, stub: pb_grpc.ResponseServiceStub) -> None:
    """A message of 1001 requests ends the stream INVALID_ARGUMENT with a BadRequest violation on `requests`, after the earlier batches' answers and without evaluating any of its requests."""
    before = decided(server)
    responses, error = stream(
        stub, [message([demo(0), demo(1)]), message([request("quiet", {}, incident_id=f"q{n}") for n in range(1001)])]
    )
    assert [len(r.determinations) for r in responses] == [2]
    assert decided(server) - before == 2
    assert error is not None
    got = details(error)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v[0] for v in got.violations] == ["requests"]
    assert "1001" in got.message and "1000" in got.message


def test_batch_of_exactly_1000_requests_is_answered(stub: pb_grpc.ResponseServiceStub) -> None:
    """A message of exactly 1000 requests is answered in full, in order, in one response."""
    responses, error = stream(
        stub, [message([request("quiet", {"deaths": n % 2}, incident_id=f"q{n}") for n in range(1000)])]
    )
    assert error is None
    assert [len(r.determinations) for r in responses] == [1000]
    assert [a.incident_id for a in responses[0].determinations] == [f"q{n}" for n in range(1000)]
    assert [a.applies for a in responses[0].determinations] == [n % 2 == 1 for n in range(1000)]


@pytest.mark.parametrize("per_message", [1000, 1], ids=["inside-one-batch", "across-messages"])
def test_deadline_stops_evaluation(
    rules_dir: Path, runtime: DurableRuntime, monkeypatch: pytest.MonkeyPatch, per_message: int
) -> None:
    """A stream whose deadline passes while a request is being evaluated ends DEADLINE_EXCEEDED for the caller and in the metrics, and no request after that one is evaluated, whether the rest are in the same message (the call is checked per request, not per message) or in later ones; the service then answers the next call."""
    # No race with the clock: the server holds the HELD_AT-th evaluation until the caller has seen
    # its deadline pass and the server has seen the call end, so the deadline always passes
    # mid-stream, however fast or slow the machine is.
    held_at = 5
    caller_gave_up = threading.Event()
    more_sent = threading.Event()  # the caller has sent requests beyond the held one
    calls: list[grpc.ServicerContext] = []
    evaluated = 0
    original_determine = servicer.ResponseServicer._determine
    original_stream = servicer.ResponseServicer._stream

    def held(self: servicer.ResponseServicer, serving: Any, req: Any) -> Any:
        nonlocal evaluated
        evaluated += 1
        if evaluated == held_at:
            more_sent.wait(BOUND)
            caller_gave_up.wait(BOUND)
            wait_until(lambda: not calls[0].is_active(), BOUND)
        return original_determine(self, serving, req)

    def seen(self: servicer.ResponseServicer, context: grpc.ServicerContext) -> Any:
        calls.append(context)
        return (yield from original_stream(self, context))

    monkeypatch.setattr(servicer.ResponseServicer, "_determine", held)
    monkeypatch.setattr(servicer.ResponseServicer, "_stream", seen)  # what the served stream runs
    sent = 0

    def requests() -> Iterator[pb.DetermineRequest]:
        nonlocal sent
        for n in range(5 * per_message + 50):  # bounded: far more than are evaluated
            sent += 1
            if sent > held_at + 1:
                more_sent.set()
            yield request("quiet", {"deaths": n % 2}, incident_id=f"q{n}")

    with running(rules_dir, runtime) as svc, channel(target(svc)) as ch:
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]

        def count(code: str) -> float:
            return sample(svc.registry, "liandong_rpc_requests_total", method="DetermineStream", code=code)

        got = 0
        with pytest.raises(grpc.RpcError) as caught:
            for response in stub.DetermineStream(batches(requests(), per_message), timeout=1.0):
                got += len(response.determinations)
        caller_gave_up.set()
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: count("DEADLINE_EXCEEDED") == 1, BOUND)
        assert count("OK") == 0
        assert sent > held_at + 1
        assert got < held_at  # the held answer never reached the caller
        assert decided(svc) == held_at  # the one under way finished; none after it was evaluated
        assert evaluated == held_at
        assert stub.Determine(request("quiet", {"deaths": 1}), timeout=BOUND).applies
        assert decided(svc) == held_at + 1  # the stream's handler is gone: only the new call counted


def test_answers_too_big_for_one_message_come_in_several(stub: pb_grpc.ResponseServiceStub) -> None:
    """A batch whose answers together exceed the message size limit (1 MiB by default) is answered in several messages, each within it, together Determine's answers in order."""
    reqs = [request("fire", {"deaths": 3 + n % 20}, incident_id=f"f{n}") for n in range(200)]
    responses, error = stream(stub, [message(reqs), message([demo(0)])])
    assert error is None
    assert len(responses) > 2
    assert all(r.ByteSize() <= 1024 * 1024 for r in responses)
    assert [len(r.determinations) for r in responses][-1] == 1  # the next batch starts a new message
    got = [a for r in responses for a in r.determinations]
    assert [without_id(a) for a in got[:-1]] == determine_each(stub, reqs)


def test_undecodable_message_is_invalid_argument(server: Service, stub: pb_grpc.ResponseServiceStub) -> None:
    """A message that is not a DetermineStreamRequest ends the stream INVALID_ARGUMENT on `request`, after the earlier batches' answers."""
    with channel(target(server)) as ch:
        raw = ch.stream_stream(
            STREAM, request_serializer=lambda b: b, response_deserializer=pb.DetermineStreamResponse.FromString
        )
        responses: list[pb.DetermineStreamResponse] = []
        with pytest.raises(grpc.RpcError) as caught:
            for response in raw(iter([message([demo(0)]).SerializeToString(), b"\x0a\x05\x01"]), timeout=BOUND):
                responses.append(response)
    assert [[a.incident_id for a in r.determinations] for r in responses] == [["d0"]]
    got = details(caught.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v[0] for v in got.violations] == ["request"] and "cannot be decoded" in got.message


# -- max_stream_requests counts requests, not messages ----------------------------------------------------
def test_stream_request_limit_is_counted_across_batches(limited: Service) -> None:
    """With max_stream_requests 10, batches of 4, 4 and 4 get 4, 4 and 2 answers, then RESOURCE_EXHAUSTED; requests past the limit are not evaluated."""
    with channel(target(limited)) as ch:
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        before = decided(limited)
        responses, error = stream(stub, [message([demo(n) for n in range(k, k + 4)]) for k in (0, 4, 8)])
        assert [[a.incident_id for a in r.determinations] for r in responses] == [
            ["d0", "d1", "d2", "d3"],
            ["d4", "d5", "d6", "d7"],
            ["d8", "d9"],
        ]
        assert decided(limited) - before == 10
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 10 requests" in (error.details() or "")


def test_stream_request_limit_exactly_reached_is_ok(limited: Service) -> None:
    """With max_stream_requests 10, batches of 4 and 6 (and an empty one) are answered in full and the stream ends OK."""
    with channel(target(limited)) as ch:
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        responses, error = stream(
            stub, [message([demo(n) for n in range(4)]), message([demo(n) for n in range(4, 10)]), message([])]
        )
        assert error is None
        assert [len(r.determinations) for r in responses] == [4, 6, 0]


def test_stream_request_limit_hit_at_the_start_of_a_batch(limited: Service) -> None:
    """With max_stream_requests 10, batches of 5, 5 and 1 get two responses of 5, then RESOURCE_EXHAUSTED with no response for the third batch."""
    with channel(target(limited)) as ch:
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        responses, error = stream(
            stub, [message([demo(n) for n in range(5)]), message([demo(n) for n in range(5, 10)]), message([demo(10)])]
        )
        assert [len(r.determinations) for r in responses] == [5, 5]
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- Client.determine_many -----------------------------------------------------------------------------------
def spy_on_messages(client: Client) -> list[int]:
    """The number of requests in each message the client's DetermineStream calls send, as they are sent."""
    sent: list[int] = []
    real = client._stub.DetermineStream

    def spying(messages: Iterator[pb.DetermineStreamRequest], **kwargs: Any) -> Any:
        def tee() -> Iterator[pb.DetermineStreamRequest]:
            for m in messages:
                sent.append(len(m.requests))
                yield m

        return real(tee(), **kwargs)

    client._stub.DetermineStream = spying  # type: ignore[method-assign]
    return sent


def test_client_largest_batch_is_answered_by_the_server(server: Service) -> None:
    """determine_many with batch_size at the one shared limit (liandong.wire.MAX_BATCH, 1000) sends a single message of 1000 requests and the server answers every one, in order."""
    assert MAX_BATCH == 1000
    reqs = [request("quiet", {"deaths": n % 2}, incident_id=f"q{n}") for n in range(MAX_BATCH)]
    with Client(target(server), timeout=BOUND) as client:
        sent = spy_on_messages(client)
        got = list(client.determine_many(reqs, timeout=BOUND, batch_size=MAX_BATCH))
    assert sent == [MAX_BATCH]
    assert [a.incident_id for a in got] == [f"q{n}" for n in range(MAX_BATCH)]
    assert [a.applies for a in got] == [n % 2 == 1 for n in range(MAX_BATCH)]


@pytest.mark.parametrize("size", [0, -1, 1001, 2.5, True])
def test_client_batch_size_out_of_range_is_value_error(size: Any) -> None:
    """determine_many refuses a batch_size that is not an integer from 1 to 1000 with ValueError when called, before anything is sent."""
    with Client("127.0.0.1:1") as client:
        with pytest.raises(ValueError, match="1 to 1000"):
            client.determine_many([demo(0)], batch_size=size)


def test_client_groups_requests_into_batches(server: Service, stub: pb_grpc.ResponseServiceStub) -> None:
    """determine_many sends 20 requests with batch_size 7 as messages of 7, 7 and 6 and yields one answer per request, in order, equal to Determine's."""
    reqs = [demo(n) for n in range(20)]
    with Client(target(server), timeout=BOUND) as client:
        sent = spy_on_messages(client)
        got = list(client.determine_many(reqs, timeout=BOUND, batch_size=7))
    assert sent == [7, 7, 6]
    assert [without_id(a) for a in got] == determine_each(stub, reqs)


def test_client_default_batch_is_100(server: Service) -> None:
    """determine_many without batch_size sends 250 requests as messages of 100, 100 and 50."""
    with Client(target(server), timeout=BOUND) as client:
        sent = spy_on_messages(client)
        got = list(client.determine_many((demo(n) for n in range(250)), timeout=BOUND))
    assert sent == [100, 100, 50]
    assert [a.incident_id for a in got] == [f"d{n}" for n in range(250)]


def test_client_reads_requests_lazily(server: Service) -> None:
    """A request generator that waits after two full batches gets their answers while it waits, and the answer to its last, partial batch once it ends."""
    release = threading.Event()
    waited_out: list[bool] = []

    def incidents() -> Iterator[pb.DetermineRequest]:
        yield from (demo(n) for n in range(4))
        waited_out.append(not release.wait(BOUND))
        yield demo(4)

    with Client(target(server), timeout=BOUND) as client:
        answers = client.determine_many(incidents(), timeout=BOUND, batch_size=2)
        try:
            early = [next(answers).incident_id for _ in range(4)]
            assert not release.is_set() and waited_out == []
        finally:
            release.set()
        rest = [a.incident_id for a in answers]
    assert early == ["d0", "d1", "d2", "d3"]
    assert rest == ["d4"]
    assert waited_out == [False]


def test_client_refusal_mid_second_batch(server: Service) -> None:
    """determine_many with batch_size 3 yields the answers before a refused request in the middle of the second batch, then raises InvalidIncident with its violations."""
    reqs = [demo(n) for n in range(4)] + [request("demo", {"hazmat": "yes"}, incident_id="bad"), demo(5)]
    received: list[str] = []
    with Client(target(server), timeout=BOUND) as client:
        with pytest.raises(InvalidIncident) as caught:
            for answer in client.determine_many(reqs, timeout=BOUND, batch_size=3):
                received.append(answer.incident_id)
    assert received == ["d0", "d1", "d2", "d3"]
    assert [(v.field, v.reason) for v in caught.value.violations] == [("hazmat", "wrong_type")]


def test_client_stopping_early_cancels_the_stream(server: Service) -> None:
    """Closing determine_many's iterator after the first answer, with requests still to come, ends the call at once: the server counts it exactly once, CANCELLED or OK (grpc.aio can hand the handler a cancel as a plain end of the requests: tests/test_round2_stream_cancel.py), and never evaluates the request the caller did not send."""
    release = threading.Event()

    def incidents() -> Iterator[pb.DetermineRequest]:
        yield demo(0)
        release.wait(BOUND)
        yield demo(1)

    def ended() -> dict[str, float]:
        return {
            c: sample(server.registry, "liandong_rpc_requests_total", method="DetermineStream", code=c)
            for c in ("OK", "CANCELLED", "DEADLINE_EXCEEDED", "INTERNAL")
        }

    before = ended()
    with Client(target(server), timeout=BOUND) as client:
        answers = client.determine_many(incidents(), timeout=BOUND, batch_size=1)
        try:
            assert next(answers).incident_id == "d0"
            answers.close()  # type: ignore[attr-defined]
            assert wait_until(lambda: sum(ended().values()) - sum(before.values()) == 1, 10)
            delta = {c: n - before[c] for c, n in ended().items()}
            assert delta["OK"] + delta["CANCELLED"] == 1, delta  # ended before the caller sent its next request
        finally:
            release.set()
