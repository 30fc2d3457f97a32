"""Between the domain's frozen values and the liandong.v1 protobuf messages."""

from __future__ import annotations

import datetime as dt
from google.protobuf import struct_pb2

from liandong.document.model import InputSpec, RuleSetDocument
from liandong.engine import descriptor
from liandong.engine.compile import CompiledRuleSet
from liandong.engine.result import (
    CitationResult,
    CommanderResult,
    ConditionTrace,
    Determination,
    GroupResult,
    Incident,
    LevelResult,
    MatchedRule,
    ObligationResult,
    UnitResult,
)
from liandong.server import bounds
from liandong.server.answers import citation
from liandong.v1 import liandong_pb2 as pb


def value_from_proto(value: struct_pb2.Value) -> object:
    """A Struct value as Python; NaN stays a float (json_format would turn it into the text 'NaN')."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: value_from_proto(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [value_from_proto(v) for v in value.list_value.values]
    if kind == "null_value":
        return None
    return descriptor.NO_VALUE  # no kind at all: a malformed Value, refused by the input checks


def incident_from_proto(msg: pb.Incident) -> Incident:
    """The incident as domain values; status.Refusal when a free string or occurred_at is out of bounds."""
    bounds.check_text("incident.id", msg.id, bounds.MAX_ID_CHARS)
    bounds.check_text("incident.type", msg.type)
    facts = {k: value_from_proto(v) for k, v in msg.facts.fields.items()}
    for name in facts:
        if len(name) > bounds.MAX_NAME_CHARS:
            raise bounds.too_long(f"incident.facts.{name[:32]}…", name, bounds.MAX_NAME_CHARS)
    occurred = None
    if msg.HasField("occurred_at"):
        bounds.check_occurred_at(msg.occurred_at)
        occurred = msg.occurred_at.ToDatetime(tzinfo=dt.timezone.utc)
    return Incident(type=msg.type, facts=facts, id=msg.id, occurred_at=occurred)


def version_info(c: CompiledRuleSet, active: bool) -> pb.VersionInfo:
    d = c.document
    return pb.VersionInfo(
        version=d.version, title=d.title, effective_from=d.effective_from.isoformat(),
        effective_until=d.effective_until.isoformat() if d.effective_until else "",
        content_hash=d.content_hash, active=active, source_plan=d.source.plan,
        source_location=d.source.location, boundary=d.boundary.value,
    )


def _input(spec: InputSpec) -> pb.Input:
    msg = pb.Input(
        name=spec.name, type=spec.type.value, unit=spec.unit, meaning=spec.meaning,
        required=spec.required, optional=spec.optional,
        values=[pb.EnumValue(id=v.id, label=v.label) for v in spec.values],
    )
    if spec.minimum is not None:
        msg.min = float(spec.minimum)
    if spec.maximum is not None:
        msg.max = float(spec.maximum)
    if spec.default is not None:
        value = struct_pb2.Value()
        if isinstance(spec.default, bool):
            value.bool_value = spec.default
        elif isinstance(spec.default, (int, float)):
            value.number_value = float(spec.default)
        else:
            value.string_value = spec.default
        msg.default_value.CopyFrom(value)
    return msg


def ruleset_to_proto(c: CompiledRuleSet, versions: list[pb.VersionInfo], active: bool) -> pb.RuleSet:
    d: RuleSetDocument = c.document
    names = {u.id: u.name for u in d.units}
    return pb.RuleSet(
        id=d.ruleset,
        version=version_info(c, active),
        incident_types=list(d.incident_types),
        inputs=[_input(i) for i in d.inputs],
        levels=[pb.Level(code=lv.code, name=lv.name, rank=lv.rank, citation=citation(lv.citation)) for lv in d.levels],
        units=[pb.Unit(id=u.id, name=u.name, duties=u.duties, citation=citation(u.citation)) for u in d.units],
        groups=[
            pb.Group(id=g.id, name=g.name, members=[pb.UnitRef(id=m, name=names[m]) for m in g.members], lead=pb.UnitRef(id=g.lead, name=names[g.lead]) if g.lead else None, duties=g.duties, citation=citation(g.citation))
            for g in d.groups
        ],
        rules=[pb.RuleInfo(id=r.id, title=r.title, citation=citation(r.citation)) for r in d.rules],
        versions=versions,
    )


# -- back to domain values, so a client can render an answer the way the rule-author CLI does ----
def _citation_back(c: pb.Citation) -> CitationResult:
    return CitationResult(c.document, c.clause)


def _unit_back(u: pb.Unit) -> UnitResult:
    return UnitResult(u.id, u.name, u.duties, _citation_back(u.citation))


def _condition_back(c: pb.Condition) -> ConditionTrace:
    return ConditionTrace(c.expression, c.actual, c.holds, tuple(_condition_back(x) for x in c.children))


def _rule_back(r: pb.MatchedRule) -> MatchedRule:
    return MatchedRule(r.id, r.title, _citation_back(r.citation), _condition_back(r.conditions) if r.HasField("conditions") else None)


def determination_from_proto(msg: pb.Determination) -> Determination:
    units = {u.id: _unit_back(u) for u in msg.participating_units}

    def ref_back(r: pb.UnitRef) -> UnitResult:
        # Every unit a group or obligation names takes part, so its duties are in the answer.
        return units.get(r.id) or UnitResult(r.id, r.name, "", CitationResult("", ""))

    level = None
    if msg.HasField("level"):
        lv = msg.level
        level = LevelResult(lv.code, lv.name, lv.rank, _citation_back(lv.citation) if lv.HasField("citation") else None)
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
            GroupResult(g.id, g.name, ref_back(g.lead) if g.HasField("lead") else None, tuple(ref_back(m) for m in g.members), g.duties, _citation_back(g.citation))
            for g in msg.groups
        ),
        obligations=tuple(
            ObligationResult(
                o.id, o.text, tuple(ref_back(w) for w in o.who),
                o.within.seconds if o.HasField("within") else None,
                _duration_text(o.within.seconds) if o.HasField("within") else "",
                _citation_back(o.citation),
            )
            for o in msg.obligations
        ),
        matched_rules=tuple(_rule_back(r) for r in msg.matched_rules),
        facts={k: value_from_proto(v) for k, v in msg.evaluated_facts.fields.items()},
        unmatched_rules=tuple(_rule_back(r) for r in msg.unmatched_rules),
    )


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
