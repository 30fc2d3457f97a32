"""liandong.v1.RulesAdminService: reload and its status, behind a bearer token."""

from __future__ import annotations

import datetime as dt
import hmac
import threading
import time
from collections.abc import Callable
from typing import NoReturn

import grpc
import structlog

from liandong.server import status
from liandong.server.calls import CallMetrics, guard
from liandong.server.convert import summaries
from liandong.server.metrics import Metrics
from liandong.server.reload import ReloadOutcome, RulesState
from liandong.v1 import admin_pb2 as apb
from liandong.v1 import admin_pb2_grpc as apb_grpc

log = structlog.get_logger("liandong.admin")


def _timestamp(msg: object, value: dt.datetime | None) -> None:
    if value is not None:
        msg.FromDatetime(value)  # type: ignore[attr-defined]


DENIED_LINES_PER_WINDOW = 10
DENIED_WINDOW_SECONDS = 60.0


class LogSampler:
    """At most `limit` log lines per `window` seconds; the lines held back are counted, and the
    next line that is written says how many (`suppressed`). A caller probing the token in a loop
    cannot flood the log; the metric still counts every refusal."""

    def __init__(
        self,
        limit: int = DENIED_LINES_PER_WINDOW,
        window: float = DENIED_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._written = 0
        self._held = 0

    def take(self) -> int | None:
        """None when this line is held back; else how many were held back since the last one written."""
        with self._lock:
            now = self._clock()
            if now - self._started >= self.window:
                self._started, self._written = now, 0
            if self._written >= self.limit:
                self._held += 1
                return None
            self._written += 1
            held, self._held = self._held, 0
            return held


class AdminServicer(apb_grpc.RulesAdminServiceServicer):
    def __init__(self, state: RulesState, token: str, metrics: Metrics, sampler: LogSampler | None = None) -> None:
        if not token:
            raise ValueError("the admin service needs a token")
        self.state = state
        self._token = token.encode()
        self.calls = CallMetrics(metrics)
        self._metrics = metrics
        self._sampler = sampler or LogSampler()

    def _deny(self, context: grpc.ServicerContext, reason: str, code: grpc.StatusCode, message: str) -> NoReturn:
        self._metrics.admin_denied.labels(reason=reason).inc()
        held = self._sampler.take()
        if held is not None:
            log.warning("admin_denied", peer=context.peer(), reason=reason, suppressed=held)  # never the token itself
        raise status.Refusal(status.plain(code, message))

    def _authorize(self, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        header = str(metadata.get("authorization", ""))
        if not header:
            self._deny(
                context, "missing", grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata"
            )
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token):
            self._deny(context, "wrong", grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not valid")

    def _status(self, outcome: ReloadOutcome | None) -> apb.ReloadStatus:
        msg = apb.ReloadStatus()
        if outcome is not None:
            msg.ok = outcome.ok
            msg.trigger = outcome.trigger
            msg.errors.extend(outcome.errors)
            msg.fixtures_passed = outcome.fixtures_passed
            msg.fixtures_failed = outcome.fixtures_failed
            _timestamp(msg.started_at, outcome.started_at)
            _timestamp(msg.finished_at, outcome.finished_at)
        _timestamp(msg.last_success_at, self.state.last_success_at)
        book = self.state.book
        if book is not None:
            msg.serving.extend(summaries(book))
        return msg

    def Reload(self, request: apb.ReloadRequest, context: grpc.ServicerContext) -> apb.ReloadStatus:
        def reload() -> apb.ReloadStatus:
            self._authorize(context)
            log.info("admin_reload", peer=context.peer())
            return self._status(self.state.reload("admin"))

        return guard(self.calls, "Reload", context, reload)

    def GetReloadStatus(self, request: apb.GetReloadStatusRequest, context: grpc.ServicerContext) -> apb.ReloadStatus:
        def get() -> apb.ReloadStatus:
            self._authorize(context)
            return self._status(self.state.last)

        return guard(self.calls, "GetReloadStatus", context, get)
