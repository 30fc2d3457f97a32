"""The code, message and unpacked google.rpc details of a failed call."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class Details:
    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str, str]] = field(default_factory=list)  # (field, description, reason)
    preconditions: list[str] = field(default_factory=list)  # subjects
    resources: list[str] = field(default_factory=list)  # resource names
    kinds: list[str] = field(default_factory=list)  # type names of every detail

    def fields(self) -> list[tuple[str, str]]:
        """(field, reason) of every BadRequest violation."""
        return [(name, reason) for name, _, reason in self.violations]


def details(error: grpc.RpcError) -> Details:
    """The code, message and unpacked google.rpc details of a failed call."""
    out = Details(error.code(), error.details() or "")
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        out.kinds.append(detail.TypeName())
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.violations.extend((v.field, v.description, v.reason) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            out.preconditions.extend(v.subject for v in failure.violations)
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            out.resources.append(info.resource_name)
    return out
