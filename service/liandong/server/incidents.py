"""liandong.v1.IncidentService: incidents followed over their life (docs/incidents.md).

Each changing call runs the domain (incidents/life.py) inside one store transaction that holds the
incident's lock, so concurrent reports to one incident are serialized and none is lost. Errors go
through the one status table (status.py); identity and roles are checked before anything is read.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from liandong.engine.result import Determination, Incident, ObligationResult
from liandong.errors import IncidentNotFound, IncidentRequestInvalid, LiandongError
from liandong.incidents import life
from liandong.incidents import model as m
from liandong.incidents.model import Change, Event, LevelSnap, Record, TrackedObligation
from liandong.rulebook import evaluate
from liandong.server import bounds, status
from liandong.server.calls import CallMetrics, Observed, guard, refusal
from liandong.server.clocks import EventBus, Now
from liandong.server.identity import ACKNOWLEDGE, COMMAND, REPORT, Caller, Identities, Refused
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState, Serving
from liandong.store.base import IncidentStore, Query
from liandong.v1 import incidents_pb2 as ipb
from liandong.v1 import incidents_pb2_grpc as ipb_grpc
from liandong.v1 import liandong_pb2 as pb

log = structlog.get_logger("liandong.incidents")

T = TypeVar("T")
SERVICE_NAME = ipb.DESCRIPTOR.services_by_name["IncidentService"].full_name
MAX_PAGE = 500
WATCH_BATCH = 500
WATCH_POLL = 1.0  # seconds: a watcher looks for other replicas' events at least this often

STATES = {
    m.PENDING: ipb.TrackedObligation.STATE_PENDING,
    m.MET: ipb.TrackedObligation.STATE_MET,
    m.OVERDUE: ipb.TrackedObligation.STATE_OVERDUE,
    m.PROMPTLY: ipb.TrackedObligation.STATE_PROMPTLY,
    m.DROPPED: ipb.TrackedObligation.STATE_DROPPED,
}
KINDS = {
    m.OPENED: ipb.IncidentEvent.OPENED,
    m.LEVEL_CHANGED: ipb.IncidentEvent.LEVEL_CHANGED,
    m.UNITS_ADDED: ipb.IncidentEvent.UNITS_ADDED,
    m.UNITS_DROPPED: ipb.IncidentEvent.UNITS_DROPPED,
    m.OBLIGATION_DUE: ipb.IncidentEvent.OBLIGATION_DUE,
    m.OBLIGATION_MET: ipb.IncidentEvent.OBLIGATION_MET,
    m.OBLIGATION_OVERDUE: ipb.IncidentEvent.OBLIGATION_OVERDUE,
    m.CLOSED_EVENT: ipb.IncidentEvent.CLOSED,
    m.OBLIGATION_DROPPED: ipb.IncidentEvent.OBLIGATION_DROPPED,
}
CHANGES = {
    "unchanged": ipb.LEVEL_CHANGE_UNCHANGED,
    "escalated": ipb.LEVEL_CHANGE_ESCALATED,
    "lowered": ipb.LEVEL_CHANGE_LOWERED,
}
# The words by which a plan lets its commanders move the command level (plan 000 第五篇 四、2).
AUTHORITY_WORDS = ("提升或下降指挥级别", "调整响应级别", "调整应急响应级别", "调整指挥级别")


def _ts(moment: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment.astimezone(dt.UTC).replace(tzinfo=None))
    return out


def _from_ts(field: str, msg: timestamp_pb2.Timestamp) -> dt.datetime:
    return bounds.to_datetime(field, msg)  # a Refusal, never INTERNAL, for a time protobuf cannot convert


def _level(level: LevelSnap | Mapping[str, Any]) -> ipb.LevelRef:
    if isinstance(level, LevelSnap):
        return ipb.LevelRef(code=level.code, name=level.name, rank=level.rank)
    return ipb.LevelRef(code=str(level["code"]), name=str(level["name"]), rank=int(level["rank"]))


def _struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    json_format.ParseDict(dict(data), out)
    return out


def obligation_to_proto(o: TrackedObligation) -> ipb.TrackedObligation:
    return ipb.TrackedObligation(
        id=o.id,
        text=o.text,
        who=[pb.UnitRef(id=r.id, name=r.name) for r in o.who],
        due_at=_ts(o.due_at),
        state=STATES[o.state],
        citation=pb.Citation(document=o.citation[0], clause=o.citation[1]),
        within=o.within,
        overdue_at=_ts(o.overdue_at),
        met_at=_ts(o.met_at),
        met_by=o.met_by,
        required_since=_ts(o.required_since),
    )


def event_to_proto(e: Event, record_type: str = "", ruleset: str = "") -> ipb.IncidentEvent:
    body = e.body
    msg = ipb.IncidentEvent(
        sequence=e.sequence,
        incident_id=e.incident_id,
        kind=KINDS[e.kind],
        at=_ts(e.at),
        incident_version=e.rev,
        changed_by=str(body.get("changed_by", "")),
        late=bool(body.get("late", False)),
        caller=str(body.get("caller", "")),
        reason=str(body.get("reason", "")),
        type=str(body.get("type", record_type)),
        ruleset=str(body.get("ruleset", ruleset)),
    )
    if body.get("from_level"):
        msg.from_level.CopyFrom(_level(body["from_level"]))
    if body.get("to_level"):
        msg.to_level.CopyFrom(_level(body["to_level"]))
    for unit_id, name in body.get("units", ()):
        msg.units.add(id=unit_id, name=name)
    if body.get("obligation"):
        msg.obligation.CopyFrom(obligation_to_proto(m.TrackedObligation.of(body["obligation"])))
    return msg


def _authority(serving: Serving | None, record: Record) -> pb.Citation | None:
    """The clause of the incident's plan that lets commanders change the level, if it has one."""
    if serving is None:
        return None
    compiled = next((c for c in serving.book.versions(record.ruleset) if c.document.version == record.version), None)
    if compiled is None:
        return None
    doc = compiled.document
    for item in (*doc.units, *doc.obligations):
        text = getattr(item, "duties", "") or getattr(item, "text", "")
        if any(w in text for w in AUTHORITY_WORDS) and item.citations:
            c = item.citations[0]
            return pb.Citation(document=c.document, clause=c.clause)
    return None


class IncidentServicer(ipb_grpc.IncidentServiceServicer):
    def __init__(
        self,
        state: RulesState,
        store: IncidentStore,
        identities: Identities,
        metrics: Metrics,
        now: Now,
        bus: EventBus,
        *,
        at_once_grace: float,
        interval: float,
        stopping: threading.Event,
        on_change: Callable[[Change], None],
    ) -> None:
        self.state = state
        self.store = store
        self.identities = identities
        self.metrics = metrics
        self.calls = CallMetrics(metrics)
        self.now = now
        self.bus = bus
        self.grace = dt.timedelta(seconds=at_once_grace)
        self.interval = interval
        self.stopping = stopping
        self.on_change = on_change

    # -- plumbing ------------------------------------------------------------------------------
    def _serving(self) -> Serving:
        serving = self.state.serving
        if serving is None:
            raise status.Refusal(status.plain(grpc.StatusCode.UNAVAILABLE, "rules are not loaded yet"))
        return serving

    def _caller(self, context: grpc.ServicerContext, role: str | None = None) -> Caller:
        try:
            caller = self.identities.identify(context)
        except Refused as exc:
            self.metrics.incident_denied.labels(reason=exc.reason).inc()
            raise status.Refusal(status.plain(exc.code, exc.message)) from None
        if role is not None and not caller.may(role):
            self.metrics.incident_denied.labels(reason="permission").inc()
            raise status.Refusal(
                status.plain(grpc.StatusCode.PERMISSION_DENIED, f"'{caller.name}' does not have the {role} role")
            )
        return caller

    def _guard(self, method: str, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        return guard(self.calls, method, context, fn)

    def _evaluate(
        self,
        serving: Serving,
        record_type: str,
        facts: Mapping[str, object],
        ruleset: str,
        version: str,
        at: dt.datetime,
    ) -> Determination:
        incident = Incident(type=record_type, facts=dict(facts), occurred_at=at)
        compiled = serving.book.select(incident, ruleset, version)
        return evaluate(serving.book.runtime, compiled, incident)

    def current_obligation(self, record: Record, obligation_id: str) -> ObligationResult | None:
        """The obligation as the incident's rule set version words it now (for deadlines.next_due)."""
        serving = self.state.serving
        if serving is None:
            return None
        try:
            det = self._evaluate(serving, record.type, record.facts, record.ruleset, record.version, record.updated_at)
        except LiandongError:
            return None
        return next((o for o in det.obligations if o.id == obligation_id), None)

    def _record(self, incident_id: str) -> Record:
        record = self.store.get(incident_id)
        if record is None:
            raise IncidentNotFound(f"no incident '{incident_id}'", field=incident_id)
        return record

    def to_state(
        self, change_or_record: Change | Record, serving: Serving | None = None, det: Determination | None = None
    ) -> ipb.IncidentState:
        """The state on the wire; `det`, when the call has just evaluated the merged facts, saves evaluating them again."""
        change = change_or_record if isinstance(change_or_record, Change) else None
        record = change.record if change else change_or_record
        assert isinstance(record, Record)
        serving = serving or self.state.serving
        msg = ipb.IncidentState(
            incident_id=record.id,
            status=ipb.INCIDENT_STATUS_OPEN if record.status == m.OPEN else ipb.INCIDENT_STATUS_CLOSED,
            version=record.rev,
            type=record.type,
            ruleset=record.ruleset,
            ruleset_version=record.version,
            facts=_struct(record.facts),
            opened_at=_ts(record.opened_at),
            updated_at=_ts(record.updated_at),
            closed_at=_ts(record.closed_at),
            obligations=[obligation_to_proto(o) for o in record.obligations],
            change=CHANGES[life.direction(change.previous_command, record.command_level)]
            if change
            else ipb.LEVEL_CHANGE_UNCHANGED,
        )
        if record.rules_level:
            msg.rules_level.CopyFrom(_level(record.rules_level))
        command = msg.command_level
        if record.command_level:
            command.level.CopyFrom(_level(record.command_level))
        authority = _authority(serving, record)
        if authority is not None:
            command.authority.CopyFrom(authority)
        if record.override:
            o = record.override
            command.overridden = True
            command.set_by, command.caller, command.reason = o.by, o.caller, o.reason
            command.set_at.FromDatetime(o.at.astimezone(dt.UTC).replace(tzinfo=None))
        if change:
            msg.units_added.extend(pb.UnitRef(id=u.id, name=u.name) for u in change.units_added)
            msg.units_dropped.extend(pb.UnitRef(id=u.id, name=u.name) for u in change.units_dropped)
            msg.groups_added.extend(change.groups_added)
            msg.groups_dropped.extend(change.groups_dropped)
            msg.obligations_added.extend(change.obligations_added)
            msg.obligations_dropped.extend(change.obligations_dropped)
        if serving is not None and det is not None:
            compiled = next(c for c in serving.book.versions(record.ruleset) if c.document.version == record.version)
            msg.determination.CopyFrom(serving.codecs[compiled.name].message(det, str(uuid.uuid4()), False))
        elif serving is not None:
            try:
                incident = Incident(
                    type=record.type, facts=dict(record.facts), id=record.id, occurred_at=record.opened_at
                )
                compiled = serving.book.select(incident, record.ruleset, record.version)
                det = evaluate(serving.book.runtime, compiled, incident)
                msg.determination.CopyFrom(serving.codecs[compiled.name].message(det, str(uuid.uuid4()), False))
            except LiandongError:
                pass  # the version is no longer loaded: the state stands without its determination
        return msg

    def _changed(self, change: Change) -> None:
        for e in change.events:
            if e.kind == m.LEVEL_CHANGED:
                before, after = e.body.get("from_level"), e.body.get("to_level")
                up = (int(after["rank"]) if after else -1) > (int(before["rank"]) if before else -1)
                self.metrics.level_changes.labels(
                    ruleset=change.record.ruleset, direction="escalated" if up else "lowered"
                ).inc()
            if e.kind == m.OBLIGATION_OVERDUE:
                self.metrics.obligations_overdue.labels(ruleset=change.record.ruleset).inc()
        if change.events:
            log.info(
                "incident_changed",
                incident_id=change.record.id,
                version=change.record.rev,
                events=[e.kind for e in change.events],
                sequences=[e.sequence for e in change.events],
                caller=change.history.caller if change.history else "",
            )
        self.bus.notify()
        self.on_change(change)

    def _changed_by_clock(self, change: Change) -> None:
        """A clock fired: counted and logged like any change, but nothing to wake."""
        for e in change.events:
            if e.kind == m.OBLIGATION_OVERDUE:
                self.metrics.obligations_overdue.labels(ruleset=change.record.ruleset).inc()
        log.info(
            "incident_changed",
            incident_id=change.record.id,
            version=change.record.rev,
            events=[e.kind for e in change.events],
            sequences=[e.sequence for e in change.events],
            caller="clock",
        )
        self.bus.notify()

    @staticmethod
    def _id(incident_id: str) -> str:
        if not incident_id:
            raise IncidentRequestInvalid("incident_id is required", field="incident_id", reason="missing")
        bounds.check_text("incident_id", incident_id)
        return incident_id

    # -- RPCs ----------------------------------------------------------------------------------
    def Report(self, request: ipb.ReportRequest, context: grpc.ServicerContext) -> ipb.IncidentState:
        def report() -> ipb.IncidentState:
            caller = self._caller(context, REPORT)
            serving = self._serving()
            incident_id = self._id(request.incident_id)
            for name in ("type", "ruleset", "version", "reporter"):
                bounds.check_text(name, getattr(request, name))
            now = self.now()
            reported_at = _from_ts("reported_at", request.reported_at) if request.HasField("reported_at") else now
            patch = bounds.facts("facts", request.facts)
            for event in request.start_events:
                bounds.check_text("start_events", event)
            starts = {k: _from_ts(f"start_events.{k}", v) for k, v in request.start_events.items()}
            judged: list[Determination] = []  # the last evaluation (a retried transaction evaluates again)

            def apply(before: Record | None) -> Change:
                if before is None:
                    if not request.type:
                        raise IncidentRequestInvalid(
                            "type is required on an incident's first report", field="type", reason="missing"
                        )
                    incident_type, ruleset, version = request.type, request.ruleset, request.version
                else:
                    if request.type and request.type != before.type:
                        raise IncidentRequestInvalid(
                            f"incident '{incident_id}' is of type '{before.type}'; a report cannot change it to '{request.type}'",
                            field="type",
                            reason="type_changed",
                        )
                    incident_type, ruleset, version = before.type, before.ruleset, before.version
                facts = life.merge_facts(before.facts if before else {}, patch)
                det = self._evaluate(serving, incident_type, facts, ruleset, version, reported_at)
                judged.append(det)
                return life.report(
                    before,
                    det,
                    incident_id=incident_id,
                    incident_type=incident_type,
                    facts=facts,
                    reported_at=reported_at,
                    start_events=starts,
                    caller=caller.name,
                    reporter=request.reporter,
                    at_once_grace=self.grace,
                    now=now,
                )

            change = self.store.change(incident_id, apply)
            self._changed(change)
            return self.to_state(change, serving, judged[-1])

        return self._guard("Report", context, report)

    def SetCommandLevel(self, request: ipb.SetCommandLevelRequest, context: grpc.ServicerContext) -> ipb.IncidentState:
        def set_level() -> ipb.IncidentState:
            caller = self._caller(context, COMMAND)
            serving = self._serving()
            incident_id = self._id(request.incident_id)
            for name in ("level", "by", "reason"):
                bounds.check_text(name, getattr(request, name))
            now = self.now()
            at = _from_ts("at", request.at) if request.HasField("at") else now

            def apply(before: Record | None) -> Change:
                if before is None:
                    raise IncidentNotFound(f"no incident '{incident_id}'", field=incident_id)
                compiled = next(
                    (c for c in serving.book.versions(before.ruleset) if c.document.version == before.version), None
                )
                levels = {lv.code: lv for lv in compiled.document.levels} if compiled else {}
                chosen = levels.get(request.level)
                if chosen is None:
                    raise IncidentRequestInvalid(
                        f"rule set '{before.ruleset}' {before.version} has no level '{request.level}' (it has: {', '.join(levels) or 'none'})",
                        field="level",
                        reason="unknown_level",
                    )
                return life.set_command_level(
                    before,
                    LevelSnap(chosen.code, chosen.name, chosen.rank),
                    by=request.by,
                    reason=request.reason,
                    caller=caller.name,
                    at=at,
                    now=now,
                )

            change = self.store.change(incident_id, apply)
            self._changed(change)
            return self.to_state(change, serving)

        return self._guard("SetCommandLevel", context, set_level)

    def Acknowledge(self, request: ipb.AcknowledgeRequest, context: grpc.ServicerContext) -> ipb.IncidentState:
        def ack() -> ipb.IncidentState:
            caller = self._caller(context, ACKNOWLEDGE)
            incident_id = self._id(request.incident_id)
            for name in ("obligation_id", "unit", "note"):
                bounds.check_text(name, getattr(request, name))
            if not request.unit:
                raise IncidentRequestInvalid("name the unit that met the obligation", field="unit", reason="missing")
            if not caller.may_acknowledge_for(request.unit):
                self.metrics.incident_denied.labels(reason="permission").inc()
                raise status.Refusal(
                    status.plain(
                        grpc.StatusCode.PERMISSION_DENIED,
                        f"'{caller.name}' may not acknowledge for unit '{request.unit}'",
                    )
                )
            now = self.now()
            at = _from_ts("at", request.at) if request.HasField("at") else now

            def apply(before: Record | None) -> Change:
                if before is None:
                    raise IncidentNotFound(f"no incident '{incident_id}'", field=incident_id)
                return life.acknowledge(
                    before,
                    request.obligation_id,
                    unit=request.unit,
                    note=request.note,
                    caller=caller.name,
                    at=at,
                    now=now,
                    current=self.current_obligation(before, request.obligation_id),
                )

            change = self.store.change(incident_id, apply)
            self._changed(change)
            return self.to_state(change)

        return self._guard("Acknowledge", context, ack)

    def Close(self, request: ipb.CloseRequest, context: grpc.ServicerContext) -> ipb.IncidentState:
        def close() -> ipb.IncidentState:
            caller = self._caller(context, COMMAND)
            incident_id = self._id(request.incident_id)
            for name in ("by", "reason"):
                bounds.check_text(name, getattr(request, name))
            now = self.now()
            at = _from_ts("at", request.at) if request.HasField("at") else now

            def apply(before: Record | None) -> Change:
                if before is None:
                    raise IncidentNotFound(f"no incident '{incident_id}'", field=incident_id)
                return life.close(before, by=request.by, reason=request.reason, caller=caller.name, at=at, now=now)

            change = self.store.change(incident_id, apply)
            self._changed(change)
            return self.to_state(change)

        return self._guard("Close", context, close)

    def GetIncident(self, request: ipb.GetIncidentRequest, context: grpc.ServicerContext) -> ipb.IncidentRecord:
        def get() -> ipb.IncidentRecord:
            self._caller(context)
            incident_id = self._id(request.incident_id)
            record = self._record(incident_id)
            out = ipb.IncidentRecord(state=self.to_state(record))
            for h in self.store.history(incident_id):
                out.history.add(
                    incident_version=h.rev, kind=h.kind, at=_ts(h.at), caller=h.caller, detail=_struct(h.detail)
                )
            after = 0
            while True:
                batch = self.store.events(after, incident_id, limit=WATCH_BATCH)
                out.events.extend(event_to_proto(e, record.type, record.ruleset) for e in batch)
                if len(batch) < WATCH_BATCH:
                    break
                after = batch[-1].sequence
            return out

        return self._guard("GetIncident", context, get)

    def ListIncidents(
        self, request: ipb.ListIncidentsRequest, context: grpc.ServicerContext
    ) -> ipb.ListIncidentsResponse:
        def list_incidents() -> ipb.ListIncidentsResponse:
            self._caller(context)
            for name in ("type", "level_at_least", "page_token"):
                bounds.check_text(name, getattr(request, name))
            size = request.page_size or 50
            if not 0 < size <= MAX_PAGE:
                raise IncidentRequestInvalid(f"page_size is 1 to {MAX_PAGE}", field="page_size", reason="out_of_range")
            rank: int | None = None
            if request.level_at_least:
                serving = self._serving()
                ranks = {
                    lv.rank
                    for name in serving.book.rulesets()
                    for c in serving.book.versions(name)
                    for lv in c.document.levels
                    if lv.code == request.level_at_least
                }
                if not ranks:
                    raise IncidentRequestInvalid(
                        f"no loaded rule set has a level '{request.level_at_least}'",
                        field="level_at_least",
                        reason="unknown_level",
                    )
                rank = min(ranks)
            statuses = {ipb.INCIDENT_STATUS_OPEN: m.OPEN, ipb.INCIDENT_STATUS_CLOSED: m.CLOSED}
            query = Query(
                status=statuses.get(request.status, ""),
                type=request.type,
                level_rank_at_least=rank,
                updated_since=_from_ts("updated_since", request.updated_since)
                if request.HasField("updated_since")
                else None,
                page_size=size,
                after_id=request.page_token,
            )
            page = self.store.find(query)
            return ipb.ListIncidentsResponse(
                incidents=[self.to_state(r) for r in page.records], next_page_token=page.next_token
            )

        return self._guard("ListIncidents", context, list_incidents)

    def WatchIncidents(
        self, request: ipb.WatchIncidentsRequest, context: grpc.ServicerContext
    ) -> Iterator[ipb.IncidentEvent]:
        obs = Observed(self.calls, "WatchIncidents")
        failure: grpc.Status | None = None
        try:
            self._caller(context)
            kinds = set(request.filter.kinds)
            unknown = kinds - set(m.EVENT_KINDS)
            if unknown:
                raise IncidentRequestInvalid(
                    f"unknown event kinds {', '.join(sorted(unknown))} (known: {', '.join(m.EVENT_KINDS)})",
                    field="filter.kinds",
                    reason="unknown_kind",
                )
            after = request.after_sequence
            types: dict[str, str] = {}
            context.add_callback(self.bus.notify)  # a cancelled or expired call wakes its wait at once
            while context.is_active() and not self.stopping.is_set():
                seen = self.bus.generation()
                batch = self.store.events(after, request.filter.incident_id, limit=WATCH_BATCH)
                for e in batch:
                    after = e.sequence
                    if kinds and e.kind not in kinds:
                        continue
                    if request.filter.type:
                        if e.incident_id not in types:
                            rec = self.store.get(e.incident_id)
                            types[e.incident_id] = rec.type if rec else ""
                        if types[e.incident_id] != request.filter.type:
                            continue
                    yield event_to_proto(e)
                if len(batch) < WATCH_BATCH:
                    self.bus.wait(seen, min(self.interval, WATCH_POLL))
        except Exception as exc:
            if context.is_active():
                failure = refusal(exc, "WatchIncidents")
                obs.code = failure.code
        finally:
            obs.finish()
        if failure is not None:
            context.abort_with_status(failure)
