"""A typed Python client for liandong.v1.ResponseService, and its answers as domain values.

Calls have a deadline; UNAVAILABLE (the only code that means "try again") is retried with backoff
up to a bound, anything else is raised at once as the matching Liandong exception, carrying the
server's field violations. `determination_from_proto` turns an answer back into the values the
rule-author CLI renders. TLS credentials come from liandong.tls.channel_credentials.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from liandong.document.model import Citation, Deadline, DeadlineKind, Timing
from liandong.document.wording import duration_words
from liandong.engine.result import (
    AssumedInput,
    CommanderResult,
    ConditionTrace,
    Determination,
    GroupResult,
    LevelResult,
    MatchedRule,
    ObligationResult,
    UnitResult,
)
from liandong.errors import (
    AmbiguousIncidentType,
    EvaluationError,
    FieldViolation,
    InvalidIncident,
    LiandongError,
    RuleSetNotFound,
    UnknownIncidentType,
)
from liandong.v1 import incidents_pb2 as ipb
from liandong.v1 import incidents_pb2_grpc as ipb_grpc
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from liandong.wire import MAX_BATCH, TIMING_BACK, deadline_from_proto, value_from_proto

T = TypeVar("T")

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_BATCH = 100


class ServiceError(LiandongError):
    """The service failed or could not be reached; `status_code` is the gRPC status code.

    (`code`, inherited from LiandongError, stays the domain's error code: "internal".)
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.status_code = code


M = TypeVar("M", error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure, error_details_pb2.ResourceInfo)


def _details(error: grpc.RpcError, kind: type[M]) -> list[M]:
    """The status details of one google.rpc type that the server attached to a failed call."""
    status = rpc_status.from_call(error)
    found: list[M] = []
    for detail in status.details if status else ():
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def _violations(error: grpc.RpcError) -> tuple[FieldViolation, ...]:
    return tuple(
        FieldViolation(
            "" if v.field == "incident.facts" else v.field.removeprefix("incident.facts."), v.description, v.reason
        )
        for bad in _details(error, error_details_pb2.BadRequest)
        for v in bad.field_violations
    )


def _candidates(error: grpc.RpcError) -> tuple[str, ...]:
    return tuple(
        v.subject for failure in _details(error, error_details_pb2.PreconditionFailure) for v in failure.violations
    )


def to_exception(error: grpc.RpcError, ruleset: str = "", incident_type: str = "") -> LiandongError:
    """The Liandong exception for a failed call; `ruleset` and `incident_type` are what was asked."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    exc: LiandongError
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = _violations(error)
        if any(v.reason == "unknown_incident_type" for v in violations):
            exc = UnknownIncidentType(incident_type, ())
        else:
            exc = InvalidIncident(ruleset, violations)
    elif code == grpc.StatusCode.NOT_FOUND:
        # The server names the rule set it resolved, also when the caller named only a type.
        named = [info.resource_name for info in _details(error, error_details_pb2.ResourceInfo) if info.resource_name]
        exc = RuleSetNotFound(message, ruleset=named[0] if named else ruleset)
    elif code == grpc.StatusCode.FAILED_PRECONDITION:
        exc = AmbiguousIncidentType(incident_type, _candidates(error))
    else:
        return ServiceError(code, message)
    exc.message = message  # the server's words, which may say more than the local default
    return exc


def _batches(requests: Iterable[pb.DetermineRequest], size: int) -> Iterator[pb.DetermineStreamRequest]:
    """The requests in messages of up to `size`, each sent once full or once the requests run out."""
    batch: list[pb.DetermineRequest] = []
    for request in requests:
        batch.append(request)
        if len(batch) == size:
            yield pb.DetermineStreamRequest(requests=batch)
            batch = []
    if batch:
        yield pb.DetermineStreamRequest(requests=batch)


class Client:
    """Calls one Liandong server. Use as a context manager, or call close()."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.1,
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str = "",
    ) -> None:
        """`credentials` (e.g. liandong.tls.channel_credentials(ca, cert, key)) for a TLS server;
        `token`: the bearer token IncidentService knows this caller by (sent on incident calls only)."""
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials) if credentials is not None else grpc.insecure_channel(target)
            )
        self._channel = channel
        self._stub = pb_grpc.ResponseServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._incidents = ipb_grpc.IncidentServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Callable[[float], T], ruleset: str = "", incident_type: str = "") -> T:
        attempt = 0
        while True:
            try:
                return fn(self.timeout)
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(self.backoff * (2**attempt))
                    attempt += 1
                    continue
                raise to_exception(error, ruleset, incident_type) from None

    @staticmethod
    def request(
        incident_type: str,
        facts: Mapping[str, object],
        *,
        incident_id: str = "",
        occurred_at: dt.datetime | None = None,
        ruleset: str = "",
        version: str = "",
        explain: bool = False,
    ) -> pb.DetermineRequest:
        req = pb.DetermineRequest(ruleset=ruleset, version=version, explain=explain)
        req.incident.id = incident_id
        req.incident.type = incident_type
        req.incident.facts.update(facts)  # type: ignore[arg-type]
        if occurred_at is not None:
            req.incident.occurred_at.FromDatetime(occurred_at)
        return req

    def determine(
        self,
        incident_type: str,
        facts: Mapping[str, object],
        *,
        incident_id: str = "",
        occurred_at: dt.datetime | None = None,
        ruleset: str = "",
        version: str = "",
        explain: bool = False,
    ) -> pb.Determination:
        """What the plan in force requires for one incident (the options are those of `request`)."""
        req = self.request(
            incident_type,
            facts,
            incident_id=incident_id,
            occurred_at=occurred_at,
            ruleset=ruleset,
            version=version,
            explain=explain,
        )
        result: pb.Determination = self._call(
            lambda t: self._stub.Determine(req, timeout=t), req.ruleset, req.incident.type
        )
        return result

    def determine_many(
        self, requests: Iterable[pb.DetermineRequest], timeout: float | None = None, batch_size: int = DEFAULT_BATCH
    ) -> Iterator[pb.Determination]:
        """One answer per request, in request order, through DetermineStream.

        Requests are sent in DetermineStreamRequest messages of up to `batch_size` (1 to 1000;
        ValueError otherwise, raised by this call). `requests` is read lazily: a message goes out
        when it is full or when `requests` runs out, so answers arrive per batch. A generator that
        waits between requests gets the answers to its complete batches meanwhile, but those to a
        partial batch only once it ends (batch_size=1 has each request answered as soon as it is
        sent). A batch must also fit the server's message size limit (1 MiB by default). A refused
        request raises its Liandong exception after the answers to the requests before it.
        `timeout` is for the whole stream. Not retried: a stream is not idempotent. Stopping the
        iteration early cancels the call.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be an integer from 1 to {MAX_BATCH}, not {batch_size!r}")
        return self._stream(requests, timeout, batch_size)

    def _stream(
        self, requests: Iterable[pb.DetermineRequest], timeout: float | None, batch_size: int
    ) -> Iterator[pb.Determination]:
        call = self._stub.DetermineStream(_batches(requests, batch_size), timeout=timeout)
        try:
            for response in call:
                yield from response.determinations
        except grpc.RpcError as error:
            raise to_exception(error) from None
        finally:
            call.cancel()  # nothing once the call has ended; stops it when the caller stops reading

    def list_rulesets(self) -> list[pb.RuleSetSummary]:
        response: pb.ListRuleSetsResponse = self._call(
            lambda t: self._stub.ListRuleSets(pb.ListRuleSetsRequest(), timeout=t)
        )
        return list(response.rulesets)

    def get_ruleset(self, ruleset: str, version: str = "") -> pb.RuleSet:
        result: pb.RuleSet = self._call(
            lambda t: self._stub.GetRuleSet(pb.GetRuleSetRequest(ruleset=ruleset, version=version), timeout=t), ruleset
        )
        return result

    # -- back to domain values, so a client can render an answer the way the rule-author CLI does ----
    # -- IncidentService (docs/incidents.md) ------------------------------------------------------
    # Calls that change an incident are not retried: a report that was written but whose answer was
    # lost would be recorded twice. Reads are retried on UNAVAILABLE like Determine.
    # Their failures are ServiceError with the status code (NOT_FOUND, PERMISSION_DENIED, ...).
    def _once(self, fn: Callable[[float], T], retry: bool = False) -> T:
        attempt = 0
        while True:
            try:
                return fn(self.timeout)
            except grpc.RpcError as error:
                if retry and error.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(self.backoff * (2**attempt))
                    attempt += 1
                    continue
                raise ServiceError(error.code(), error.details() or "") from None

    def report(
        self,
        incident_id: str,
        facts: Mapping[str, object],
        *,
        incident_type: str = "",
        reported_at: dt.datetime | None = None,
        reporter: str = "",
        ruleset: str = "",
        version: str = "",
        start_events: Mapping[str, dt.datetime] | None = None,
    ) -> ipb.IncidentState:
        """Open the incident (its first report needs incident_type) or merge these facts into it;
        a None value removes a fact."""
        req = ipb.ReportRequest(
            incident_id=incident_id, type=incident_type, reporter=reporter, ruleset=ruleset, version=version
        )
        req.facts.update(facts)  # type: ignore[arg-type]
        if reported_at is not None:
            req.reported_at.FromDatetime(reported_at)
        for name, moment in (start_events or {}).items():
            req.start_events[name].FromDatetime(moment)
        answer: ipb.IncidentState = self._once(
            lambda t: self._incidents.Report(req, timeout=t, metadata=self._metadata)
        )
        return answer

    def set_command_level(self, incident_id: str, level: str, *, by: str, reason: str = "") -> ipb.IncidentState:
        req = ipb.SetCommandLevelRequest(incident_id=incident_id, level=level, by=by, reason=reason)
        answer: ipb.IncidentState = self._once(
            lambda t: self._incidents.SetCommandLevel(req, timeout=t, metadata=self._metadata)
        )
        return answer

    def acknowledge(self, incident_id: str, obligation_id: str, unit: str, note: str = "") -> ipb.IncidentState:
        req = ipb.AcknowledgeRequest(incident_id=incident_id, obligation_id=obligation_id, unit=unit, note=note)
        answer: ipb.IncidentState = self._once(
            lambda t: self._incidents.Acknowledge(req, timeout=t, metadata=self._metadata)
        )
        return answer

    def close_incident(self, incident_id: str, *, by: str, reason: str = "") -> ipb.IncidentState:
        req = ipb.CloseRequest(incident_id=incident_id, by=by, reason=reason)
        answer: ipb.IncidentState = self._once(lambda t: self._incidents.Close(req, timeout=t, metadata=self._metadata))
        return answer

    def get_incident(self, incident_id: str) -> ipb.IncidentRecord:
        req = ipb.GetIncidentRequest(incident_id=incident_id)
        answer: ipb.IncidentRecord = self._once(
            lambda t: self._incidents.GetIncident(req, timeout=t, metadata=self._metadata), retry=True
        )
        return answer

    def list_incidents(self, request: ipb.ListIncidentsRequest | None = None) -> ipb.ListIncidentsResponse:
        req = request or ipb.ListIncidentsRequest()
        answer: ipb.ListIncidentsResponse = self._once(
            lambda t: self._incidents.ListIncidents(req, timeout=t, metadata=self._metadata), retry=True
        )
        return answer

    def watch(
        self, after_sequence: int = 0, *, incident_id: str = "", incident_type: str = "", timeout: float | None = None
    ) -> Iterator[ipb.IncidentEvent]:
        """Every event after after_sequence, then new ones as they happen (until timeout, if given).
        Reconnect with the last sequence seen to miss nothing and repeat nothing."""
        req = ipb.WatchIncidentsRequest(
            after_sequence=after_sequence, filter=ipb.IncidentFilter(incident_id=incident_id, type=incident_type)
        )
        stream = self._incidents.WatchIncidents(req, timeout=timeout, metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
                return
            raise ServiceError(error.code(), error.details() or "") from None
        finally:
            stream.cancel()


def _citation_back(c: pb.Citation) -> Citation:
    return Citation(c.document, c.clause)


def _citations_back(cs: Iterable[pb.Citation]) -> tuple[Citation, ...]:
    return tuple(_citation_back(c) for c in cs)


def _unit_back(u: pb.Unit) -> UnitResult:
    return UnitResult(u.id, u.name, u.duties, _citation_back(u.citation), _citations_back(u.citations), u.member)


def _condition_back(c: pb.Condition) -> ConditionTrace:
    return ConditionTrace(c.expression, c.actual, c.holds, tuple(_condition_back(x) for x in c.children))


def _rule_back(r: pb.MatchedRule) -> MatchedRule:
    conditions = _condition_back(r.conditions) if r.HasField("conditions") else None
    return MatchedRule(r.id, r.title, _citation_back(r.citation), conditions, _citations_back(r.citations))


def determination_from_proto(msg: pb.Determination) -> Determination:
    units = {u.id: _unit_back(u) for u in msg.participating_units}

    def ref_back(r: pb.UnitRef) -> UnitResult:
        # Every unit a group or obligation names takes part, so its duties are in the answer.
        return units.get(r.id) or UnitResult(r.id, r.name, "", Citation("", ""))

    level = None
    if msg.HasField("level"):
        lv = msg.level
        cited = _citation_back(lv.citation) if lv.HasField("citation") else None
        level = LevelResult(lv.code, lv.name, lv.rank, cited, _citations_back(lv.citations))
    return Determination(
        ruleset=msg.ruleset,
        version=msg.version,
        content_hash=msg.content_hash,
        incident_id=msg.incident_id,
        incident_type=msg.incident_type,
        applies=msg.applies,
        level=level,
        command_tier=msg.command_tier,
        commanders=tuple(CommanderResult(c.role, c.who) for c in msg.commanders),
        lead=_unit_back(msg.lead_agency) if msg.HasField("lead_agency") else None,
        units=tuple(_unit_back(u) for u in msg.participating_units),
        groups=tuple(
            GroupResult(
                g.id,
                g.name,
                ref_back(g.lead) if g.HasField("lead") else None,
                tuple(ref_back(m) for m in g.members),
                g.duties,
                _citation_back(g.citation),
                _citations_back(g.citations),
            )
            for g in msg.groups
        ),
        obligations=tuple(
            ObligationResult(
                o.id,
                o.text,
                tuple(ref_back(w) for w in o.who),
                o.within.seconds if o.HasField("within") else None,
                _within_text_back(o),
                _citation_back(o.citation),
                _citations_back(o.citations),
                TIMING_BACK.get(o.timing, Timing.NONE),
                deadline_from_proto(o.deadline) if o.HasField("deadline") else _legacy_deadline(o),
            )
            for o in msg.obligations
        ),
        matched_rules=tuple(_rule_back(r) for r in msg.matched_rules),
        facts={k: value_from_proto(v) for k, v in msg.evaluated_facts.fields.items()},
        unmatched_rules=tuple(_rule_back(r) for r in msg.unmatched_rules),
        assumed=tuple(AssumedInput(a.input, value_from_proto(a.value), a.meaning) for a in msg.assumed),
    )


def _within_text_back(o: pb.Obligation) -> str:
    """`within` as the document wrote it; from the limit for a server that sends no deadline."""
    if o.HasField("deadline") and o.deadline.written:
        return o.deadline.written
    if o.timing == pb.Obligation.TIMING_WITHIN and o.HasField("within"):
        return _duration_text(o.within.seconds)
    return ""


def _legacy_deadline(o: pb.Obligation) -> Deadline:
    """The structured deadline of an answer from a server that predates it: the timing enum says it all."""
    timing = TIMING_BACK.get(o.timing, Timing.NONE)
    if timing is Timing.AT_ONCE:
        return Deadline(kind=DeadlineKind.AT_ONCE, wording="立即")
    if timing is Timing.PROMPTLY:
        return Deadline(kind=DeadlineKind.PROMPTLY, wording="及时(无时限)")
    if timing is Timing.WITHIN and o.HasField("within"):
        return Deadline(
            kind=DeadlineKind.ELAPSED, seconds=o.within.seconds, wording=f"{duration_words(o.within.seconds)}内"
        )
    return Deadline()


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


__all__ = [
    "Client",
    "ServiceError",
    "determination_from_proto",
    "EvaluationError",
    "InvalidIncident",
    "RuleSetNotFound",
    "AmbiguousIncidentType",
    "UnknownIncidentType",
    "to_exception",
]
