"""How every call is counted, timed and ended: metrics by method and code, and failures turned into
a status through the one table (status.py). Both services, ResponseService and RulesAdminService, use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import structlog

from liandong.engine.result import Determination
from liandong.errors import EngineFailure, LiandongError
from liandong.server import status
from liandong.server.metrics import Metrics

log = structlog.get_logger("liandong.decisions")

T = TypeVar("T")


class Observed:
    """Counts and times one call by method and final status code."""

    __slots__ = ("metrics", "method", "code", "start")

    def __init__(self, metrics: CallMetrics, method: str) -> None:
        self.metrics = metrics
        self.method = method
        self.code = grpc.StatusCode.OK
        self.start = time.perf_counter()

    def finish(self) -> None:
        self.metrics.finished(self.method, self.code, time.perf_counter() - self.start)


class CallMetrics:
    """The metric children a call touches, looked up once per label set: `labels()` costs more
    than the increment itself, and these label sets are few (methods, codes, loaded rule ids)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._calls: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}
        self._decisions: dict[tuple[str, str, str], Any] = {}
        self._rules: dict[tuple[str, str], Any] = {}
        self._evaluations: dict[str, Any] = {}

    def finished(self, method: str, code: grpc.StatusCode, elapsed: float) -> None:
        key = (method, code)
        children = self._calls.get(key)
        if children is None:
            children = self._calls[key] = (
                self.metrics.rpc_requests.labels(method=method, code=code.name),
                self.metrics.rpc_duration.labels(method=method, code=code.name),
            )
        children[0].inc()
        children[1].observe(elapsed)

    def decided(self, det: Determination, level: str, elapsed: float) -> None:
        evaluation = self._evaluations.get(det.ruleset)
        if evaluation is None:
            evaluation = self._evaluations[det.ruleset] = self.metrics.evaluation_duration.labels(ruleset=det.ruleset)
        evaluation.observe(elapsed)
        key = (det.ruleset, det.version, level)
        decisions = self._decisions.get(key)
        if decisions is None:
            decisions = self._decisions[key] = self.metrics.decisions.labels(
                ruleset=det.ruleset, version=det.version, level=level
            )
        decisions.inc()
        for rule in det.matched_rules:
            hits = self._rules.get((det.ruleset, rule.id))
            if hits is None:
                hits = self._rules[(det.ruleset, rule.id)] = self.metrics.rule_hits.labels(
                    ruleset=det.ruleset, rule=rule.id
                )
            hits.inc()


def refusal(exc: Exception, method: str) -> grpc.Status:
    """The status a failed call ends with; an unexpected failure is logged, never sent."""
    if isinstance(exc, status.Refusal):
        return exc.status
    if isinstance(exc, EngineFailure):  # its message can quote the incident's facts: not logged
        log.error("engine_failure", method=method, ruleset=exc.ruleset, cause=type(exc.__cause__).__name__)
    if isinstance(exc, LiandongError):
        return status.to_status(exc)
    log.exception("internal_error", method=method)
    return status.plain(grpc.StatusCode.INTERNAL, "internal error; see the service log")


def guard(calls: CallMetrics, method: str, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    """fn(), counted and timed; an exception ends the call with its status from the one table."""
    obs = Observed(calls, method)
    try:
        return fn()
    except Exception as exc:
        st = refusal(exc, method)
        obs.code = st.code
        context.abort_with_status(st)
        raise AssertionError("abort_with_status returned") from exc
    finally:
        obs.finish()
