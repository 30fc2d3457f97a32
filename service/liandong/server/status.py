"""The one table from domain errors to gRPC status codes, with google.rpc details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from liandong.errors import (
    AmbiguousIncidentType,
    DeadlineUnknown,
    EngineFailure,
    IncidentClosed,
    IncidentNotFound,
    IncidentRequestInvalid,
    InvalidIncident,
    LiandongError,
    RuleDocumentError,
    RuleSetNotFound,
    StoreUnavailable,
    UnknownIncidentType,
)

# Most specific first: the first matching class decides.
STATUS_TABLE: tuple[tuple[type[LiandongError], grpc.StatusCode], ...] = (
    (InvalidIncident, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownIncidentType, grpc.StatusCode.INVALID_ARGUMENT),
    (RuleSetNotFound, grpc.StatusCode.NOT_FOUND),
    (AmbiguousIncidentType, grpc.StatusCode.FAILED_PRECONDITION),
    (EngineFailure, grpc.StatusCode.INTERNAL),
    (DeadlineUnknown, grpc.StatusCode.OUT_OF_RANGE),
    (IncidentNotFound, grpc.StatusCode.NOT_FOUND),
    (IncidentClosed, grpc.StatusCode.FAILED_PRECONDITION),
    (IncidentRequestInvalid, grpc.StatusCode.INVALID_ARGUMENT),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (RuleDocumentError, grpc.StatusCode.FAILED_PRECONDITION),
    (LiandongError, grpc.StatusCode.INTERNAL),
)


def code_for(error: LiandongError) -> grpc.StatusCode:
    return next(code for cls, code in STATUS_TABLE if isinstance(error, cls))


# A status travels in trailers (grpc-message percent-encoded, the details base64-encoded); clients
# refuse trailers over 8 KiB and fail the call with RESOURCE_EXHAUSTED instead, losing the error.
# So both are bounded: a thousand violations, or a 100 KB incident type, still arrive as themselves.
MAX_MESSAGE_BYTES = 1024
MAX_DETAILS_BYTES = 2048
MAX_TEXT_BYTES = 256  # one field name, description or resource name in the details


def clip(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The text cut to at most `limit` bytes of UTF-8, marked when cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 16].decode("utf-8", "ignore") + " … (truncated)"


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _make(code: grpc.StatusCode, message: str, details: list[Message] | None = None) -> grpc.Status:
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=clip(message, MAX_MESSAGE_BYTES),
        details=[_pack(d) for d in details or ()],
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def _details(error: LiandongError) -> list[Message]:
    if isinstance(error, InvalidIncident):
        bad = error_details_pb2.BadRequest()
        for v in error.violations:
            bad.field_violations.add(
                field=clip(f"incident.facts.{v.field}" if v.field else "incident.facts"),
                description=clip(v.description),
                reason=v.reason,
            )
            if bad.ByteSize() > MAX_DETAILS_BYTES:  # the rest are counted in the message
                del bad.field_violations[-1]
                break
        return [bad]
    if isinstance(error, UnknownIncidentType):
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field="incident.type", description=clip(error.message), reason="unknown_incident_type")
        return [bad]
    if isinstance(error, AmbiguousIncidentType):
        failure = error_details_pb2.PreconditionFailure()
        for name in error.candidates:
            failure.violations.add(type="RULESET_AMBIGUOUS", subject=name, description=clip(error.message))
        return [failure]
    if isinstance(error, IncidentRequestInvalid):
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=clip(error.field), description=clip(error.message), reason=error.reason)
        return [bad]
    if isinstance(error, IncidentNotFound):
        return [
            error_details_pb2.ResourceInfo(
                resource_type="liandong.v1.Incident", resource_name=clip(error.field), description=clip(error.message)
            )
        ]
    if isinstance(error, RuleSetNotFound):
        return [
            error_details_pb2.ResourceInfo(
                resource_type="liandong.v1.RuleSet", resource_name=clip(error.ruleset), description=clip(error.message)
            )
        ]
    return []


def to_status(error: LiandongError) -> grpc.Status:
    """A gRPC status for the error: its code, a one-line message (never a stack trace), details."""
    message = error.message
    if isinstance(error, EngineFailure):
        message = "the rules engine failed; the incident was not evaluated"
    if error.suggestion and not isinstance(error, EngineFailure):
        message += f" (did you mean '{error.suggestion}'?)"
    details = _details(error)
    if isinstance(error, InvalidIncident):
        listed = len(details[0].field_violations)  # type: ignore[attr-defined]
        if listed < len(error.violations):
            message = (
                clip(message, MAX_MESSAGE_BYTES - 64)
                + f" [{listed} of {len(error.violations)} violations in the details]"
            )
    return _make(code_for(error), message, details)


def bad_request(field: str, description: str, reason: str = "invalid") -> grpc.Status:
    """INVALID_ARGUMENT for a malformed request (not about the facts), with its field violation."""
    bad = error_details_pb2.BadRequest()
    bad.field_violations.add(field=field, description=clip(description), reason=reason)
    return _make(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {description}", [bad])


def plain(code: grpc.StatusCode, message: str) -> grpc.Status:
    """A status with a code and message and no details."""
    return _make(code, message)


class Refusal(Exception):
    """A call refused before or outside the domain (not loaded yet, malformed request)."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status
