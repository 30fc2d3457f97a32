"""How every call is counted, timed and ended: metrics by method and code, and failures turned into
a status through the one table (status.py). Both services, ResponseService and RulesAdminService, use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
    """The tallies a call touches (metrics.CallTallies: one lock per call or decision, families built
    at scrape time)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._tallies = metrics.calls

    def finished(self, method: str, code: grpc.StatusCode, elapsed: float) -> None:
        self._tallies.finished(method, code.name, elapsed)

    def decided(self, det: Determination, level: str, elapsed: float) -> None:
        self._tallies.decided(det, level, elapsed)


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
