"""liandong.v1.ResponseService: answers for incidents, and what is loaded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import structlog

from liandong.engine.result import Determination
from liandong.errors import LiandongError, RuleSetNotFound
from liandong.rulebook import RuleBook
from liandong.server import convert, status
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc

log = structlog.get_logger("liandong.decisions")

T = TypeVar("T")


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
    def __init__(self, state: RulesState, metrics: Metrics, log_facts: bool = False) -> None:
        self.state = state
        self.metrics = metrics
        self.log_facts = log_facts

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

    def _determine(self, book: RuleBook, request: pb.DetermineRequest) -> pb.Determination:
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
        return self._guard("Determine", context, lambda: self._determine(self._book(), request))

    def DetermineStream(self, request_iterator: Iterator[pb.DetermineRequest], context: grpc.ServicerContext) -> Iterator[pb.Determination]:
        obs = Observed(self.metrics, "DetermineStream")
        failure: grpc.Status | None = None
        try:
            book = self._book()  # the whole stream answers from one snapshot
            for request in request_iterator:
                yield self._determine(book, request)
        except Exception as exc:
            if not context.is_active():
                obs.code = grpc.StatusCode.CANCELLED  # the caller went away
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
