"""The ResponseService handlers called from HTTP: the same code, counting and status table as gRPC.

A handler is called with a LocalContext standing in for grpc's ServicerContext: the call is active
(HTTP has no gRPC deadline; uvicorn drops the request if the client goes), and `abort_with_status`
raises Aborted carrying the very grpc.Status the gRPC caller would get. The calls are counted in
`liandong_rpc_requests_total` under their RPC's method name, as gRPC calls are.
"""

from __future__ import annotations

from typing import cast

import grpc
from google.protobuf import json_format
from google.rpc import status_pb2

from liandong.server import status
from liandong.server.servicer import ResponseServicer
from liandong.v1 import liandong_pb2 as pb

DETAILS_KEY = "grpc-status-details-bin"

# gRPC code -> HTTP status, as google.api.http / grpc-gateway map them.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class Aborted(Exception):
    """A call ended with a status other than OK: the status a gRPC caller would have got."""

    def __init__(self, st: grpc.Status) -> None:
        super().__init__(st.details)
        self.status = st

    def rpc_status(self) -> status_pb2.Status:
        """The google.rpc.Status with its details, as sent in the gRPC trailers."""
        for key, value in self.status.trailing_metadata or ():
            if key == DETAILS_KEY:
                return status_pb2.Status.FromString(value)
        return status_pb2.Status(code=self.status.code.value[0], message=self.status.details or "")

    def http_status(self) -> int:
        return HTTP_STATUS.get(self.status.code, 500)

    def json(self) -> str:
        """google.rpc.Status in protobuf's JSON mapping, details included (e.g. BadRequest)."""
        return json_format.MessageToJson(self.rpc_status(), indent=None, ensure_ascii=False)

    def field_violations(self) -> list[tuple[str, str, str]]:
        """(field, description, reason) of every BadRequest violation in the details."""
        from google.rpc import error_details_pb2

        out: list[tuple[str, str, str]] = []
        for detail in self.rpc_status().details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                out.extend((v.field, v.description, v.reason) for v in bad.field_violations)
        return out


class LocalContext:
    """What the ResponseService handlers use of grpc.ServicerContext, for a call made in-process."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None

    def abort_with_status(self, st: grpc.Status) -> None:
        raise Aborted(st)

    def add_callback(self, callback: object) -> bool:
        return False


def _context() -> grpc.ServicerContext:
    return cast(grpc.ServicerContext, LocalContext())


class Calls:
    """Determine, ListRuleSets and GetRuleSet through the gRPC handlers; Aborted when refused."""

    def __init__(self, servicer: ResponseServicer) -> None:
        self.servicer = servicer

    def determine(self, request: pb.DetermineRequest) -> pb.Determination:
        answer = self.servicer.Determine(request, _context())
        return pb.Determination.FromString(answer)

    def list_rulesets(self) -> pb.ListRuleSetsResponse:
        return self.servicer.ListRuleSets(pb.ListRuleSetsRequest(), _context())

    def get_ruleset(self, ruleset: str, version: str = "") -> pb.RuleSet:
        return self.servicer.GetRuleSet(pb.GetRuleSetRequest(ruleset=ruleset, version=version), _context())

    @staticmethod
    def bad_request(field: str, description: str) -> Aborted:
        """The INVALID_ARGUMENT a request that cannot be read gets (as gRPC's undecodable request)."""
        return Aborted(status.bad_request(field, description))
