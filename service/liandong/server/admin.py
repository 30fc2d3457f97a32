"""liandong.v1.RulesAdminService: reload and its status, behind a bearer token."""

from __future__ import annotations

import datetime as dt
import hmac

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


class AdminServicer(apb_grpc.RulesAdminServiceServicer):
    def __init__(self, state: RulesState, token: str, metrics: Metrics) -> None:
        if not token:
            raise ValueError("the admin service needs a token")
        self.state = state
        self._token = token.encode()
        self.calls = CallMetrics(metrics)

    def _authorize(self, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        header = str(metadata.get("authorization", ""))
        if not header:
            raise status.Refusal(status.plain(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata"))
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token):
            log.warning("admin_denied", peer=context.peer())  # never the token itself
            raise status.Refusal(status.plain(grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not valid"))

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
