"""liandong.v1.ResponseService: answers for incidents, and what is loaded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import structlog

from liandong.engine.result import Determination
from liandong.errors import EngineFailure, LiandongError, RuleSetNotFound
from liandong.rulebook import RuleBook
from liandong.server import convert, status
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc

log = structlog.get_logger("liandong.decisions")

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ResponseService"].full_name


class Undecodable:
    """A request that protobuf could not decode (e.g. facts nested deeper than its limit of 100)."""

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def decode(data: bytes) -> object:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError; grpc would answer INTERNAL for it
            return Undecodable(str(exc))

    return decode


class DecodeGuard(grpc.ServerInterceptor):
    """Hands ResponseService an Undecodable instead of failing the call in grpc, so it answers INVALID_ARGUMENT."""

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Req, Resp] | None], handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or handler.request_deserializer is None or not method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        guarded: grpc.RpcMethodHandler[Req, Resp] = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))  # type: ignore[attr-defined]
        return guarded


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
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= DEADLINE_SLACK else grpc.StatusCode.CANCELLED


class Observed:
    """Counts and times one call by method and final status code."""

    def __init__(self, metrics: Metrics, method: str) -> None:
        self.metrics = metrics
        self.method = method
        self.code = grpc.StatusCode.OK
        self.start = time.perf_counter()

    def finish(self) -> None:
        elapsed = time.perf_counter() - self.start
        self.metrics.rpc_requests.labels(method=self.method, code=self.code.name).inc()
        self.metrics.rpc_duration.labels(method=self.method, code=self.code.name).observe(elapsed)


class ResponseServicer(pb_grpc.ResponseServiceServicer):
    def __init__(self, state: RulesState, metrics: Metrics, log_facts: bool = False, max_stream_requests: int = 100_000) -> None:
        self.state = state
        self.metrics = metrics
        self.log_facts = log_facts
        self.max_stream_requests = max_stream_requests

    # -- plumbing ------------------------------------------------------------------------------
    def _book(self) -> RuleBook:
        book = self.state.book
        if book is None:
            raise status.Refusal(status.plain(grpc.StatusCode.UNAVAILABLE, "rules are not loaded yet"))
        return book

    @staticmethod
    def _refusal(exc: Exception, method: str) -> grpc.Status:
        """The status a failed call ends with; an unexpected failure is logged, never sent."""
        if isinstance(exc, status.Refusal):
            return exc.status
        if isinstance(exc, EngineFailure):  # its message can quote the incident's facts: not logged
            log.error("engine_failure", method=method, ruleset=exc.ruleset, cause=type(exc.__cause__).__name__)
        if isinstance(exc, LiandongError):
            return status.to_status(exc)
        log.exception("internal_error", method=method)
        return status.plain(grpc.StatusCode.INTERNAL, "internal error; see the service log")

    def _guard(self, method: str, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        obs = Observed(self.metrics, method)
        try:
            return fn()
        except Exception as exc:
            st = self._refusal(exc, method)
            obs.code = st.code
            context.abort_with_status(st)
            raise AssertionError("abort_with_status returned") from exc
        finally:
            obs.finish()

    def _determine(self, book: RuleBook, request: pb.DetermineRequest, context: grpc.ServicerContext | None = None) -> pb.Determination:
        _undecodable(request)
        if context is not None and not context.is_active():  # its deadline passed while it waited
            raise status.Refusal(status.plain(_ended(context), "the call ended before it was evaluated"))
        if not request.HasField("incident") or not request.incident.type:
            raise status.Refusal(status.bad_request("incident.type", "is required"))
        incident = convert.incident_from_proto(request.incident)
        start = time.perf_counter()
        det = book.determine(incident, request.ruleset, request.version, explain=request.explain)
        elapsed = time.perf_counter() - start
        decision_id = str(uuid.uuid4())
        self._record(det, decision_id, elapsed)
        return convert.determination_to_proto(det, decision_id, request.explain)

    def _record(self, det: Determination, decision_id: str, elapsed: float) -> None:
        level = det.level.code if det.level else "none"
        self.metrics.evaluation_duration.labels(ruleset=det.ruleset).observe(elapsed)
        self.metrics.decisions.labels(ruleset=det.ruleset, version=det.version, level=level).inc()
        for rule in det.matched_rules:
            self.metrics.rule_hits.labels(ruleset=det.ruleset, rule=rule.id).inc()
        fields: dict[str, object] = dict(
            decision_id=decision_id, incident_id=det.incident_id, incident_type=det.incident_type,
            ruleset=det.ruleset, version=det.version, response_level=level, applies=det.applies,
            rules=[r.id for r in det.matched_rules], latency_ms=round(elapsed * 1000, 3),
        )
        if self.log_facts:
            fields["facts"] = det.facts
        log.info("decision", **fields)

    # -- RPCs ----------------------------------------------------------------------------------
    def Determine(self, request: pb.DetermineRequest, context: grpc.ServicerContext) -> pb.Determination:
        return self._guard("Determine", context, lambda: self._determine(self._book(), request, context))

    def DetermineStream(self, request_iterator: Iterator[pb.DetermineRequest], context: grpc.ServicerContext) -> Iterator[pb.Determination]:
        obs = Observed(self.metrics, "DetermineStream")
        failure: grpc.Status | None = None
        try:
            book = self._book()  # the whole stream answers from one snapshot
            for count, request in enumerate(request_iterator, 1):
                if not context.is_active():  # deadline passed or caller gone: evaluate nothing more
                    obs.code = _ended(context)
                    return
                if count > self.max_stream_requests:
                    raise status.Refusal(status.plain(grpc.StatusCode.RESOURCE_EXHAUSTED, f"a stream carries at most {self.max_stream_requests} requests; send the rest on another stream"))
                yield self._determine(book, request)
            if not context.is_active():  # a cancel can also end the request iterator quietly
                obs.code = _ended(context)
        except GeneratorExit:  # grpc closed the stream at a yield: the call ended
            obs.code = _ended(context)
            raise
        except Exception as exc:
            if not context.is_active():
                obs.code = _ended(context)  # the caller went away or its deadline passed
            else:
                failure = self._refusal(exc, "DetermineStream")
                obs.code = failure.code
        finally:
            obs.finish()
        if failure is not None:
            context.abort_with_status(failure)

    def ListRuleSets(self, request: pb.ListRuleSetsRequest, context: grpc.ServicerContext) -> pb.ListRuleSetsResponse:
        return self._guard("ListRuleSets", context, lambda: pb.ListRuleSetsResponse(rulesets=summaries(self._book())))

    def GetRuleSet(self, request: pb.GetRuleSetRequest, context: grpc.ServicerContext) -> pb.RuleSet:
        def get() -> pb.RuleSet:
            _undecodable(request)
            book = self._book()
            if not request.ruleset:
                raise status.Refusal(status.bad_request("ruleset", "is required"))
            versions = book.versions(request.ruleset)
            active = _active_version(book, request.ruleset)
            if request.version:
                chosen = next((c for c in versions if c.document.version == request.version), None)
                if chosen is None:
                    raise RuleSetNotFound(f"rule set '{request.ruleset}' has no version '{request.version}'", ruleset=request.ruleset)
            else:
                chosen = next((c for c in versions if c.document.version == active), versions[-1])
            infos = [convert.version_info(c, c.document.version == active) for c in versions]
            return convert.ruleset_to_proto(chosen, infos, chosen.document.version == active)

        return self._guard("GetRuleSet", context, get)


def _active_version(book: RuleBook, ruleset: str) -> str:
    try:
        return book.active(ruleset).document.version
    except LiandongError:
        return ""


def summaries(book: RuleBook) -> list[pb.RuleSetSummary]:
    out = []
    for name in book.rulesets():
        versions = book.versions(name)
        active = _active_version(book, name)
        out.append(pb.RuleSetSummary(
            id=name,
            incident_types=sorted({t for c in versions for t in c.document.incident_types}),
            active_version=active,
            versions=[convert.version_info(c, c.document.version == active) for c in versions],
        ))
    return out
