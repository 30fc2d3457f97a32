"""Between the domain's frozen values and the liandong.v1 protobuf messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import struct_pb2

from liandong.document.model import Citation, InputSpec, RuleSetDocument
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
from liandong.v1 import liandong_pb2 as pb

M = TypeVar("M")


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
    facts = {k: value_from_proto(v) for k, v in msg.facts.fields.items()}
    occurred = msg.occurred_at.ToDatetime(tzinfo=dt.timezone.utc) if msg.HasField("occurred_at") else None
    return Incident(type=msg.type, facts=facts, id=msg.id, occurred_at=occurred)


def _citation(c: CitationResult | Citation | None) -> pb.Citation | None:
    return pb.Citation(document=c.document, clause=c.clause) if c is not None else None


# Answers share their parts: the engine hands out the same frozen unit, group and rule results for
# a document (engine/combine.py), so each is converted once and copied in afterwards, which
# protobuf does in C. Keyed by identity (an entry holds its object, so the id stays its own);
# dropped when full.
_MAX_CACHED = 4096
_UNITS: dict[int, tuple[UnitResult, pb.Unit]] = {}
_REFS: dict[int, tuple[UnitResult, pb.UnitRef]] = {}
_GROUPS: dict[int, tuple[GroupResult, pb.Group]] = {}
_RULES: dict[int, tuple[MatchedRule, pb.MatchedRule]] = {}


def _cached(cache: dict[int, tuple[Any, M]], key: object, make: Callable[[], M]) -> M:
    found = cache.get(id(key))
    if found is not None and found[0] is key:
        return found[1]
    made = make()
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[id(key)] = (key, made)
    return made


def _unit(u: UnitResult) -> pb.Unit:
    return _cached(_UNITS, u, lambda: pb.Unit(id=u.id, name=u.name, duties=u.duties, citation=_citation(u.citation)))


def _ref(u: UnitResult) -> pb.UnitRef:
    return _cached(_REFS, u, lambda: pb.UnitRef(id=u.id, name=u.name))


def _group(g: GroupResult) -> pb.Group:
    return _cached(_GROUPS, g, lambda: pb.Group(
        id=g.id, name=g.name, lead=_ref(g.lead) if g.lead else None,
        members=[_ref(m) for m in g.members], duties=g.duties, citation=_citation(g.citation),
    ))


def _condition(t: ConditionTrace) -> pb.Condition:
    return pb.Condition(expression=t.expression, actual=t.actual, holds=t.holds, children=[_condition(c) for c in t.children])


def _rule(r: MatchedRule) -> pb.MatchedRule:
    if r.conditions is not None:  # explain: conditions carry the incident's values, so never cached
        return pb.MatchedRule(id=r.id, title=r.title, citation=_citation(r.citation), conditions=_condition(r.conditions))
    return _cached(_RULES, r, lambda: pb.MatchedRule(id=r.id, title=r.title, citation=_citation(r.citation), conditions=None))


def summary(det: Determination) -> str:
    if not det.applies:
        return "no rule applies: nothing is required under this plan"
    parts = []
    if det.level:
        parts.append(f"{det.level.code} {det.level.name}")
    if det.lead:
        parts.append(f"lead {det.lead.name}")
    parts.append(f"{len(det.units)} units, {len(det.groups)} groups, {len(det.obligations)} obligations")
    return "; ".join(parts)


def determination_to_proto(det: Determination, decision_id: str, explain: bool) -> pb.Determination:
    msg = pb.Determination(
        decision_id=decision_id,
        incident_id=det.incident_id,
        incident_type=det.incident_type,
        ruleset=det.ruleset,
        version=det.version,
        content_hash=det.content_hash,
        applies=det.applies,
        summary=summary(det),
        command_tier=det.command_tier,
        commanders=[pb.Commander(role=c.role, who=c.who) for c in det.commanders],
        participating_units=[_unit(u) for u in det.units],
        groups=[_group(g) for g in det.groups],
        matched_rules=[_rule(r) for r in det.matched_rules],
        unmatched_rules=[_rule(r) for r in det.unmatched_rules],
    )
    if det.level:
        msg.level.CopyFrom(pb.Level(code=det.level.code, name=det.level.name, rank=det.level.rank, citation=_citation(det.level.citation)))
    if det.lead:
        msg.lead_agency.CopyFrom(_unit(det.lead))
    for o in det.obligations:
        item = msg.obligations.add(id=o.id, text=o.text, who=[_ref(w) for w in o.who], citation=_citation(o.citation))
        if o.within_seconds is not None:
            item.within.FromSeconds(o.within_seconds)
    if explain:
        msg.evaluated_facts.update(det.facts)  # type: ignore[arg-type]
    return msg


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
        levels=[pb.Level(code=lv.code, name=lv.name, rank=lv.rank, citation=_citation(lv.citation)) for lv in d.levels],
        units=[pb.Unit(id=u.id, name=u.name, duties=u.duties, citation=_citation(u.citation)) for u in d.units],
        groups=[
            pb.Group(id=g.id, name=g.name, members=[pb.UnitRef(id=m, name=names[m]) for m in g.members], lead=pb.UnitRef(id=g.lead, name=names[g.lead]) if g.lead else None, duties=g.duties, citation=_citation(g.citation))
            for g in d.groups
        ],
        rules=[pb.RuleInfo(id=r.id, title=r.title, citation=_citation(r.citation)) for r in d.rules],
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
