"""liandong.v1.ResponseService: answers for incidents, and what is loaded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import grpc
import grpc.aio
import structlog

from liandong.engine.result import Determination
from liandong.errors import RuleSetNotFound
from liandong.rulebook import RuleBook, evaluate
from liandong.server import answers as answers_pb
from liandong.server import bounds, convert, status
from liandong.server.bridge import Aborted, CallContext, inline
from liandong.server.calls import CallMetrics, Observed, guard, refusal
from liandong.server.decision_ids import decision_id as new_decision_id
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState, Serving
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from liandong.wire import MAX_BATCH

log = structlog.get_logger("liandong.decisions")

T = TypeVar("T")
NEXT_REQUEST = object()  # what a stream yields to be sent its next request message
END = object()  # what it is sent when there is none
TURN = object()  # what it yields to let the event loop serve other calls mid-batch
# Requests evaluated between two turns of the loop: a message of up to MAX_BATCH requests takes
# ~100 ms to evaluate, and without turns every other call on the loop (a live Determine among
# them) would wait for all of it. 16 fire decisions are about 2 ms: near the 5 ms a thread held
# the GIL for under the thread-pool server.
TURN_EVERY = 16

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ResponseService"].full_name
# Response messages stay within what grpc clients accept by default (4 MiB) and the server's own
# send limit; each answer adds its key and length to the message.
CLIENT_RECEIVE_LIMIT = 4 * 1024 * 1024
ANSWER_FRAMING = 6


class Undecodable:
    """A request that protobuf could not decode (e.g. facts nested deeper than its limit of 100)."""

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], object]) -> Callable[[bytes], object]:
    """Hands the handler an Undecodable instead of failing the call in grpc (which would answer
    INTERNAL), so it answers INVALID_ARGUMENT."""

    def decode(data: bytes) -> object:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError
            return Undecodable(str(exc))

    return decode


def _as_is(answer: bytes) -> bytes:
    """Answers leave the servicer serialized already (server/answers.py)."""
    return answer


def register(servicer: ResponseServicer, server: grpc.aio.Server) -> None:
    """Serve ResponseService on the event loop: tolerant decoding, answers sent as the servicer
    serialized them (no interceptor: one would run on every call)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Determine": grpc.unary_unary_rpc_method_handler(
            inline(servicer.Determine), _tolerant(pb.DetermineRequest.FromString), _as_is
        ),
        "DetermineStream": grpc.stream_stream_rpc_method_handler(
            servicer.determine_stream, _tolerant(pb.DetermineStreamRequest.FromString), _as_is
        ),
        "ListRuleSets": grpc.unary_unary_rpc_method_handler(
            inline(servicer.ListRuleSets),
            _tolerant(pb.ListRuleSetsRequest.FromString),
            pb.ListRuleSetsResponse.SerializeToString,
        ),
        "GetRuleSet": grpc.unary_unary_rpc_method_handler(
            inline(servicer.GetRuleSet), _tolerant(pb.GetRuleSetRequest.FromString), pb.RuleSet.SerializeToString
        ),
    }
    assert set(handlers) == {m.name for m in pb.DESCRIPTOR.services_by_name["ResponseService"].methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


DEADLINE_SLACK = 0.1  # seconds: transit time between the caller's deadline and ours


def _undecodable(request: object) -> None:
    if isinstance(request, Undecodable):
        raise status.Refusal(status.bad_request("request", f"cannot be decoded: {request.error}"))


def _ended(context: grpc.ServicerContext) -> grpc.StatusCode:
    """How a call that is no longer active ended: its deadline passed, or the caller cancelled it.

    The caller's deadline fires before ours (ours starts when the request arrives), and its
    library then cancels the call; a cancel that arrives this close to our deadline is the deadline.
    """
    remaining = context.time_remaining()
    return (
        grpc.StatusCode.DEADLINE_EXCEEDED
        if remaining is not None and remaining <= DEADLINE_SLACK
        else grpc.StatusCode.CANCELLED
    )


def _not_sent(decision_ids: list[str], reason: str) -> None:
    """Decision lines are written before their answers are sent (a crash can leave lines for answers
    nobody got, never answers without lines); where the server learns an answer may not have left,
    it says so, by decision id."""
    if decision_ids:
        log.warning("answers_not_confirmed_sent", decision_ids=list(decision_ids), reason=reason)


class ResponseServicer(pb_grpc.ResponseServiceServicer):
    def __init__(
        self,
        state: RulesState,
        metrics: Metrics,
        log_facts: bool = False,
        max_stream_requests: int = 100_000,
        max_message_bytes: int = CLIENT_RECEIVE_LIMIT,
    ) -> None:
        self.state = state
        self.max_answer_bytes = max_message_bytes - ANSWER_FRAMING  # an answer also has to fit a stream response
        self.max_response_bytes = min(max_message_bytes, CLIENT_RECEIVE_LIMIT)
        self.calls = CallMetrics(metrics)
        self.log_facts = log_facts
        self.max_stream_requests = max_stream_requests

    # -- plumbing ------------------------------------------------------------------------------
    def _serving(self) -> Serving:
        serving = self.state.serving
        if serving is None:
            raise status.Refusal(status.plain(grpc.StatusCode.UNAVAILABLE, "rules are not loaded yet"))
        return serving

    def _book(self) -> RuleBook:
        return self._serving().book

    def _guard(self, method: str, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        return guard(self.calls, method, context, fn)

    def _determine(self, serving: Serving, request: pb.DetermineRequest | Undecodable) -> tuple[bytes, str]:
        """One answer, serialized (joined from the codec's pieces, or built as a message with
        explain), and its decision id. Its decision line is written here, before gRPC sends it."""
        _undecodable(request)
        assert isinstance(request, pb.DetermineRequest)
        if not request.HasField("incident") or not request.incident.type:
            raise status.Refusal(status.bad_request("incident.type", "is required"))
        bounds.check_text("ruleset", request.ruleset)
        bounds.check_text("version", request.version)
        incident = convert.incident_from_proto(request.incident)
        start = time.perf_counter()
        compiled = serving.book.select(incident, request.ruleset, request.version)
        det = evaluate(serving.book.runtime, compiled, incident, explain=request.explain)
        elapsed = time.perf_counter() - start
        decision_id = new_decision_id()
        codec = serving.codecs[compiled.name]
        answer = (
            codec.message(det, decision_id, True).SerializeToString()
            if request.explain
            else codec.wire(det, decision_id)
        )
        self._check_size(len(answer))
        self._record(det, decision_id, elapsed)  # only answers that can be sent are decisions
        return answer, decision_id

    def _check_size(self, size: int) -> None:
        """Refuse an answer grpc would not send: it would fail the call after it was counted OK."""
        if size > self.max_answer_bytes:
            raise status.Refusal(
                status.plain(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the answer is {size} bytes, over the server's message size limit of {self.max_answer_bytes} (--max-message-bytes)",
                )
            )

    def _record(self, det: Determination, decision_id: str, elapsed: float) -> None:
        level = det.level.code if det.level else "none"
        self.calls.decided(det, level, elapsed)
        fields: dict[str, object] = dict(
            decision_id=decision_id,
            incident_id=det.incident_id,
            incident_type=det.incident_type,
            ruleset=det.ruleset,
            version=det.version,
            response_level=level,
            applies=det.applies,
            rules=[r.id for r in det.matched_rules],
            latency_ms=round(elapsed * 1000, 3),
        )
        if det.assumed:
            fields["assumed"] = [a.input for a in det.assumed]
        if self.log_facts:
            fields["facts"] = det.facts
        log.info("decision", **fields)

    # -- RPCs ----------------------------------------------------------------------------------
    def Determine(self, request: pb.DetermineRequest, context: grpc.ServicerContext) -> bytes:
        def answer() -> bytes:
            serving = self._serving()
            if not context.is_active():  # its deadline passed while it waited
                raise status.Refusal(status.plain(_ended(context), "the call ended before it was evaluated"))
            return self._determine(serving, request)[0]

        return self._guard("Determine", context, answer)

    def DetermineStream(
        self, request_iterator: Iterator[pb.DetermineStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        """The stream driven in-process (tests drive it with a stand-in context): `_stream` fed
        from an iterator, its messages yielded."""
        stream = self._stream(context)
        item = next(stream)
        try:
            while True:
                if item is NEXT_REQUEST:
                    item = stream.send(next(request_iterator, END))
                elif item is TURN:
                    item = next(stream)
                else:
                    assert isinstance(item, bytes)
                    yield item
                    item = next(stream)
        except StopIteration:
            return
        finally:
            stream.close()  # GeneratorExit at the yield this one was closed at

    async def determine_stream(self, requests: object, context: grpc.aio.ServicerContext[Any, bytes]) -> None:
        """DetermineStream on the asyncio server: requests read and answers written by the loop,
        each batch evaluated on it (no thread held by a stream). A call that ends while it waits
        (cancel, deadline, server stop) closes `_stream` at the yield it waits at."""
        ctx = CallContext(context)
        stream = self._stream(ctx)  # type: ignore[arg-type]  # the part of the context it uses
        try:
            item = next(stream)
            while True:
                if item is NEXT_REQUEST:
                    request = await context.read()
                    if request is grpc.aio.EOF:
                        # A cancel can reach the handler as a plain end of the request stream, with
                        # grpc's own report of it queued just behind: one turn of the loop lets that
                        # report cancel this task (CancelledError here) before the stream counts OK.
                        # Best effort: grpc.aio says nothing more (docs/reliability.md).
                        await asyncio.sleep(0)
                        request = END
                    item = stream.send(request)
                elif item is TURN:
                    await asyncio.sleep(0)  # a cancel arrives here too, as CancelledError
                    item = next(stream)
                else:
                    assert isinstance(item, bytes)
                    await context.write(item)
                    item = next(stream)
        except StopIteration:
            pass
        except Aborted as aborted:
            await context.abort_with_status(aborted.status)
        finally:
            stream.close()
            ctx.end()

    def _stream(self, context: grpc.ServicerContext) -> Generator[bytes | object, object, None]:
        """One DetermineStream, without its I/O: yields NEXT_REQUEST to be sent the next request
        message (END when there is none), each response message to send, and TURN every
        TURN_EVERY requests, where the driver lets the loop serve other calls. A yield the stream
        is closed at (GeneratorExit) is where the call ended."""
        obs = Observed(self.calls, "DetermineStream")
        failure: grpc.Status | None = None
        count = 0
        ids: list[str] = []  # decisions evaluated (and logged) whose answers are not yet handed to gRPC
        handing: list[str] = []  # those of the message being handed to gRPC now
        try:
            serving = self._serving()  # the whole stream answers from one snapshot
            while True:
                batch = yield NEXT_REQUEST
                if batch is END:
                    break
                _undecodable(batch)
                assert isinstance(batch, pb.DetermineStreamRequest)
                if len(batch.requests) > MAX_BATCH:
                    raise status.Refusal(
                        status.bad_request(
                            "requests", f"{len(batch.requests)} requests in one message; the limit is {MAX_BATCH}"
                        )
                    )
                answers: list[bytes] = []
                size = 0
                try:
                    for request in batch.requests:
                        if not context.is_active():  # deadline passed or caller gone: evaluate nothing more
                            obs.code = _ended(context)
                            _not_sent(ids, "the call ended before they were sent")
                            return
                        count += 1
                        if count > self.max_stream_requests:
                            raise status.Refusal(
                                status.plain(
                                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"a stream carries at most {self.max_stream_requests} requests; send the rest on another stream",
                                )
                            )
                        wire, decision_id = self._determine(serving, request)
                        if answers and size + len(wire) + ANSWER_FRAMING > self.max_response_bytes:
                            handing, ids = ids, []
                            yield answers_pb.stream_response(answers)  # a batch's answers may need several messages
                            handing = []
                            answers, size = [], 0
                        answers.append(wire)
                        ids.append(decision_id)
                        size += len(wire) + ANSWER_FRAMING
                        if count % TURN_EVERY == 0:
                            yield TURN
                except Exception:
                    if answers:  # the answers before the refused request still reach the caller
                        handing, ids = ids, []
                        yield answers_pb.stream_response(answers)
                        handing = []
                    raise
                handing, ids = ids, []
                yield answers_pb.stream_response(answers)
                handing = []
            if not context.is_active():  # its deadline passed as the request stream ended
                obs.code = _ended(context)
        except GeneratorExit:  # the call ended where the stream waited
            obs.code = _ended(context)
            # gRPC did not come back for more after this message: it was not (or not surely) sent.
            # Closed at a turn of the loop, the answers evaluated so far were not handed to it yet.
            _not_sent(
                handing + ids,
                "the call ended while they were being sent" if handing else "the call ended before they were sent",
            )
            raise
        except Exception as exc:
            if not context.is_active():
                obs.code = _ended(context)  # the caller went away or its deadline passed
            else:
                failure = refusal(exc, "DetermineStream")
                obs.code = failure.code
        finally:
            obs.finish()
        if failure is not None:
            context.abort_with_status(failure)

    def ListRuleSets(self, request: pb.ListRuleSetsRequest, context: grpc.ServicerContext) -> pb.ListRuleSetsResponse:
        return self._guard(
            "ListRuleSets", context, lambda: pb.ListRuleSetsResponse(rulesets=convert.summaries(self._book()))
        )

    def GetRuleSet(self, request: pb.GetRuleSetRequest, context: grpc.ServicerContext) -> pb.RuleSet:
        def get() -> pb.RuleSet:
            _undecodable(request)
            book = self._book()
            if not request.ruleset:
                raise status.Refusal(status.bad_request("ruleset", "is required"))
            bounds.check_text("ruleset", request.ruleset)
            bounds.check_text("version", request.version)
            versions = book.versions(request.ruleset)
            active = convert.active_version(book, request.ruleset)
            if request.version:
                chosen = next((c for c in versions if c.document.version == request.version), None)
                if chosen is None:
                    raise RuleSetNotFound(
                        f"rule set '{request.ruleset}' has no version '{request.version}'", ruleset=request.ruleset
                    )
            else:
                chosen = next((c for c in versions if c.document.version == active), versions[-1])
            infos = [convert.version_info(c, c.document.version == active) for c in versions]
            return convert.ruleset_to_proto(chosen, infos, chosen.document.version == active)

        return self._guard("GetRuleSet", context, get)
