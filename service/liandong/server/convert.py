"""Between the domain's frozen values and the liandong.v1 protobuf messages."""

from __future__ import annotations

from liandong.document.model import START_EVENTS, InputSpec, Obligation, RuleSetDocument
from liandong.engine.compile import CompiledRuleSet
from liandong.engine.result import Incident, incident
from liandong.errors import LiandongError
from liandong.rulebook import RuleBook
from liandong.server import bounds
from liandong.server.answers import after_who, citation, citations, scalar_value, unit
from liandong.v1 import liandong_pb2 as pb


def incident_from_proto(msg: pb.Incident) -> Incident:
    """The incident as domain values; status.Refusal when a free string or occurred_at is out of bounds."""
    bounds.check_text("incident.id", msg.id, bounds.MAX_ID_CHARS)
    bounds.check_text("incident.type", msg.type)
    facts = bounds.facts("incident.facts", msg.facts)
    occurred = None
    if msg.HasField("occurred_at"):
        occurred = bounds.to_datetime("incident.occurred_at", msg.occurred_at)
    return incident(incident_type=msg.type, facts=facts, incident_id=msg.id, occurred_at=occurred)


def version_info(c: CompiledRuleSet, active: bool) -> pb.VersionInfo:
    d = c.document
    return pb.VersionInfo(
        version=d.version,
        title=d.title,
        effective_from=d.effective_from.isoformat(),
        effective_until=d.effective_until.isoformat() if d.effective_until else "",
        content_hash=d.content_hash,
        active=active,
        source_plan=d.source.plan,
        source_location=d.source.location,
        boundary=d.boundary.value,
        start_events=[e for e in START_EVENTS if any(o.deadline.start == e for o in d.obligations)],
    )


def _obligation(o: Obligation, names: dict[str, str]) -> pb.Obligation:
    """A catalogue obligation with its clock (GetRuleSet): what a caller needs to show its deadline."""
    msg = pb.Obligation(id=o.id, text=o.text, who=[pb.UnitRef(id=w, name=names[w]) for w in o.who])
    msg.MergeFrom(after_who(o))
    return msg


def _input(spec: InputSpec) -> pb.Input:
    msg = pb.Input(
        name=spec.name,
        type=spec.type.value,
        unit=spec.unit,
        meaning=spec.meaning,
        required=spec.required,
        optional=spec.optional,
        values=[pb.EnumValue(id=v.id, label=v.label) for v in spec.values],
    )
    if spec.minimum is not None:
        msg.min = float(spec.minimum)
    if spec.maximum is not None:
        msg.max = float(spec.maximum)
    if spec.default is not None:
        msg.default_value.CopyFrom(scalar_value(spec.default))
    return msg


def ruleset_to_proto(c: CompiledRuleSet, versions: list[pb.VersionInfo], active: bool) -> pb.RuleSet:
    d: RuleSetDocument = c.document
    names = {u.id: u.name for u in d.units}
    return pb.RuleSet(
        id=d.ruleset,
        version=version_info(c, active),
        incident_types=list(d.incident_types),
        inputs=[_input(i) for i in d.inputs],
        levels=[
            pb.Level(
                code=lv.code,
                name=lv.name,
                rank=lv.rank,
                citation=citation(lv.citation),
                citations=citations(lv.citations),
            )
            for lv in d.levels
        ],
        units=[unit(u) for u in d.units],
        groups=[
            pb.Group(
                id=g.id,
                name=g.name,
                members=[pb.UnitRef(id=m, name=names[m]) for m in g.members],
                lead=pb.UnitRef(id=g.lead, name=names[g.lead]) if g.lead else None,
                duties=g.duties,
                citation=citation(g.citation),
                citations=citations(g.citations),
            )
            for g in d.groups
        ],
        rules=[
            pb.RuleInfo(id=r.id, title=r.title, citation=citation(r.citation), citations=citations(r.citations))
            for r in d.rules
        ],
        versions=versions,
        checks=[
            pb.InputCheck(id=c.id, message=c.message, inputs=list(c.inputs), citations=citations(c.citations))
            for c in d.checks
        ],
        empty_report_meaningful=d.empty_report_meaningful,
        obligations=[_obligation(o, names) for o in d.obligations],
    )


def active_version(book: RuleBook, ruleset: str) -> str:
    try:
        return book.active(ruleset).document.version
    except LiandongError:
        return ""


def summaries(book: RuleBook) -> list[pb.RuleSetSummary]:
    out = []
    for name in book.rulesets():
        versions = book.versions(name)
        active = active_version(book, name)
        out.append(
            pb.RuleSetSummary(
                id=name,
                incident_types=sorted({t for c in versions for t in c.document.incident_types}),
                active_version=active,
                versions=[version_info(c, c.document.version == active) for c in versions],
            )
        )
    return out
