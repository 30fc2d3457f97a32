"""Answers as liandong.v1 messages, from pieces built once per rule set version.

Answers of one version repeat the same units, groups, rules and levels, so each is converted, and
serialized, once when the version is loaded (RulesState builds a codec per version before it swaps
a new rule book in). Explain answers are built as messages from those pieces. Plain answers are
joined as bytes: protobuf writes a message as its fields' encodings in field-number order, and a
repeated field as its elements' encodings one after another, so an answer is the concatenation of
the pieces' bytes in that order, byte-identical to `SerializeToString()` of the same message
(tests/test_answers.py checks this over thousands of answers). Joining costs a few microseconds
where building and serializing the message cost a hundred.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from google.protobuf import struct_pb2

from liandong.document.model import Citation, Obligation, Unit
from liandong.engine.compile import CompiledRuleSet
from liandong.engine.result import (
    AssumedInput,
    ConditionTrace,
    Determination,
    GroupResult,
    MatchedRule,
    ObligationResult,
    UnitResult,
)
from liandong.v1 import liandong_pb2 as pb
from liandong.wire import TIMING, deadline_to_proto

_FIELDS = pb.Determination.DESCRIPTOR.fields_by_name


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(number: int) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2)


_OBLIGATION_TAG = _tag(_FIELDS["obligations"].number)
_DETERMINATION_TAG = _tag(pb.DetermineStreamResponse.DESCRIPTOR.fields_by_name["determinations"].number)


def _wire(**fields: object) -> bytes:
    """The encoding of some fields of a Determination, written by protobuf itself."""
    return pb.Determination(**fields).SerializeToString()  # type: ignore[arg-type]


_DECISION_ID_TAG = _tag(_FIELDS["decision_id"].number)
_INCIDENT_ID_TAG = _tag(_FIELDS["incident_id"].number)
_SUMMARY_TAG = _tag(_FIELDS["summary"].number)
_APPLIES = _wire(applies=True)
# Bodies (units, groups, obligations) kept per codec: at most ~20 kB each, so a few MB at most.
BODY_CACHE_SIZE = 256


def _text(tag: bytes, text: str) -> bytes:
    """A string field as protobuf writes it: nothing when empty (proto3), else key, length, UTF-8."""
    if not text:
        return b""
    data = text.encode()
    n = len(data)
    return tag + (_SHORT_LENGTHS[n] if n < 0x80 else _varint(n)) + data


_SHORT_LENGTHS = tuple(bytes((n,)) for n in range(0x80))


def stream_response(answers: Iterable[bytes]) -> bytes:
    """A DetermineStreamResponse holding already-serialized Determinations.

    Each answer's bytes are copied once, into the message (about 1 MB of them per message): its key and
    length go in as parts of their own, not prefixed to a copy of the answer."""
    parts: list[bytes] = []
    for a in answers:
        parts.append(_DETERMINATION_TAG + _varint(len(a)))
        parts.append(a)
    return b"".join(parts)


def citation(c: Citation | None) -> pb.Citation | None:
    return pb.Citation(document=c.document, clause=c.clause) if c is not None else None


def citations(cs: Iterable[Citation]) -> list[pb.Citation]:
    return [pb.Citation(document=c.document, clause=c.clause) for c in cs]


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


def unit(u: UnitResult | Unit) -> pb.Unit:
    return pb.Unit(
        id=u.id,
        name=u.name,
        duties=u.duties,
        citation=citation(u.citation),
        citations=citations(u.citations),
        member=u.member,
    )


def scalar_value(value: object) -> struct_pb2.Value:
    """A default (bool, number or text) as a google.protobuf.Value."""
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def assumed_input(a: AssumedInput) -> pb.AssumedInput:
    return pb.AssumedInput(input=a.input, value=scalar_value(a.value), meaning=a.meaning)


def _condition(t: ConditionTrace) -> pb.Condition:
    return pb.Condition(
        expression=t.expression, actual=t.actual, holds=t.holds, children=[_condition(c) for c in t.children]
    )


def after_who(o: ObligationResult | Obligation) -> pb.Obligation:
    """The fields of an obligation numbered after `who` (within, citation, citations, timing, deadline):
    its clock and clauses, the same for an answer's obligation and the catalogue's (GetRuleSet)."""
    msg = pb.Obligation(
        citation=citation(o.citation),
        citations=citations(o.citations),
        timing=TIMING[o.timing],
        deadline=deadline_to_proto(o.deadline, o.within_text),
    )
    if o.within_seconds is not None:
        msg.within.FromSeconds(o.within_seconds)
    return msg


class AnswerCodec:
    """One compiled rule set version's answer pieces, as messages and as bytes."""

    def __init__(self, compiled: CompiledRuleSet) -> None:
        prepared, doc = compiled.answers, compiled.document
        self.units = {i: unit(u) for i, u in prepared.units.items()}
        self.refs = {i: pb.UnitRef(id=u.id, name=u.name) for i, u in prepared.units.items()}
        self.groups = {
            i: pb.Group(
                id=g.id,
                name=g.name,
                lead=self.refs[g.lead.id] if g.lead else None,
                members=[self.refs[m.id] for m in g.members],
                duties=g.duties,
                citation=citation(g.citation),
                citations=citations(g.citations),
            )
            for i, g in prepared.groups.items()
        }
        self.rules = {
            i: pb.MatchedRule(id=r.id, title=r.title, citation=citation(r.citation), citations=citations(r.citations))
            for i, r in prepared.rules.items()
        }
        self.levels = {
            c: pb.Level(
                code=lv.code,
                name=lv.name,
                rank=lv.rank,
                citation=citation(lv.citation),
                citations=citations(lv.citations),
            )
            for c, lv in prepared.levels.items()
        }

        self._header = _wire(ruleset=doc.ruleset, version=doc.version, content_hash=doc.content_hash)
        self._unit_wire = {i: _wire(participating_units=[m]) for i, m in self.units.items()}
        self._lead_wire = {i: _wire(lead_agency=m) for i, m in self.units.items()}
        self._group_wire = {i: _wire(groups=[m]) for i, m in self.groups.items()}
        self._rule_wire = {i: _wire(matched_rules=[m]) for i, m in self.rules.items()}
        self._level_wire = {c: _wire(level=m) for c, m in self.levels.items()}
        self._type_wire = {t: _wire(incident_type=t) for t in doc.incident_types}
        self.assumed = {name: assumed_input(a) for name, a in prepared.defaults}
        self._assumed_wire = {name: _wire(assumed=[m]) for name, m in self.assumed.items()}
        # Obligations owed by every participating (member) unit name a different set of units per
        # answer: their encoding is written around the answer's units (fields 1-2, then 3, then 4-8).
        self._by_participants = frozenset(o.id for o in doc.obligations if o.by_participants or o.by_members)
        self._obligation_wire = {
            i: _wire(obligations=[self._obligation(o)])
            for i, o in prepared.obligations.items()
            if i not in self._by_participants
        }
        self._obligation_ends = {
            i: (pb.Obligation(id=o.id, text=o.text).SerializeToString(), after_who(o).SerializeToString())
            for i, o in prepared.obligations.items()
            if i in self._by_participants
        }
        self._who_wire = {i: pb.Obligation(who=[r]).SerializeToString() for i, r in self.refs.items()}
        self._bodies: dict[tuple[int, int, int], tuple[object, object, object, bytes]] = {}
        # Tier and commanders come from the document's `then`s (a rule's, or a level's own).
        thens = [r.then for r in doc.rules] + [lv.then for lv in doc.levels if lv.then is not None]
        self._tier_wire = {t.command_tier: _wire(command_tier=t.command_tier) for t in thens if t.command_tier}
        self._commanders_wire = {
            tuple((c.role, c.who) for c in t.commanders): _wire(
                commanders=[pb.Commander(role=c.role, who=c.who) for c in t.commanders]
            )
            for t in thens
            if t.commanders
        }

    def _obligation(self, o: ObligationResult) -> pb.Obligation:
        msg = after_who(o)
        msg.MergeFrom(pb.Obligation(id=o.id, text=o.text, who=[self.refs[w.id] for w in o.who]))
        return msg

    def _rule(self, r: MatchedRule) -> pb.MatchedRule:
        if r.conditions is None:
            return self.rules[r.id]
        return pb.MatchedRule(
            id=r.id,
            title=r.title,
            citation=citation(r.citation),
            conditions=_condition(r.conditions),
            citations=citations(r.citations),
        )

    # -- answers -----------------------------------------------------------------------------------
    def message(self, det: Determination, decision_id: str, explain: bool) -> pb.Determination:
        """The answer as a message (explain answers, and the reference for `wire`)."""
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
            participating_units=[self.units[u.id] for u in det.units],
            groups=[self.groups[g.id] for g in det.groups],
            obligations=[self._obligation(o) for o in det.obligations],
            matched_rules=[self._rule(r) for r in det.matched_rules],
            unmatched_rules=[self._rule(r) for r in det.unmatched_rules],
            assumed=[self.assumed[a.input] for a in det.assumed],
        )
        if det.level:
            msg.level.CopyFrom(self.levels[det.level.code])
        if det.lead:
            msg.lead_agency.CopyFrom(self.units[det.lead.id])
        if explain:
            msg.evaluated_facts.update(det.facts)  # type: ignore[arg-type]
        return msg

    def wire(self, det: Determination, decision_id: str) -> bytes:
        """A plain (not explain) answer, serialized: the same bytes as `message(...).SerializeToString()`."""
        parts = [
            _text(_DECISION_ID_TAG, decision_id),
            _text(_INCIDENT_ID_TAG, det.incident_id),
            self._header,
            _APPLIES if det.applies else b"",
            _text(_SUMMARY_TAG, summary(det)),
        ]
        if det.level is not None:
            parts.append(self._level_wire[det.level.code])
        if det.command_tier:
            parts.append(self._tier_wire[det.command_tier])
        if det.commanders:
            parts.append(self._commanders_wire[tuple((c.role, c.who) for c in det.commanders)])
        if det.lead is not None:
            parts.append(self._lead_wire[det.lead.id])
        parts.append(self._body(det.units, det.groups, det.obligations))
        rule_wire = self._rule_wire
        parts.extend(rule_wire[r.id] for r in det.matched_rules)
        type_wire = self._type_wire.get(det.incident_type)
        parts.append(type_wire if type_wire is not None else _wire(incident_type=det.incident_type))
        assumed_wire = self._assumed_wire
        parts.extend(assumed_wire[a.input] for a in det.assumed)
        return b"".join(parts)

    def _body(
        self, units: tuple[UnitResult, ...], groups: tuple[GroupResult, ...], obligations: tuple[ObligationResult, ...]
    ) -> bytes:
        """Fields 12-14 (units, groups, obligations), the bulk of an answer. combine hands out the same
        tuples for the same fired rules (engine/combine.py), so their bytes are kept per those very
        tuples: the entry holds them, so their ids cannot be reused while it exists."""
        key = (id(units), id(groups), id(obligations))
        found = self._bodies.get(key)
        if found is not None:
            return found[3]
        unit_wire = self._unit_wire
        group_wire = self._group_wire
        parts = [unit_wire[u.id] for u in units]
        parts.extend(group_wire[g.id] for g in groups)
        for o in obligations:
            parts.append(
                self._obligation_wire[o.id]
                if o.id not in self._by_participants
                else self._participants_obligation(o.id, o.who)
            )
        body = b"".join(parts)
        if len(self._bodies) >= BODY_CACHE_SIZE:
            self._bodies.clear()  # clear() is atomic: evicting entries one by one could race between threads
        self._bodies[key] = (units, groups, obligations, body)
        return body

    def _participants_obligation(self, oid: str, who: Sequence[UnitResult]) -> bytes:
        head, tail = self._obligation_ends[oid]
        who_wire = self._who_wire
        payload = b"".join((head, *(who_wire[w.id] for w in who), tail))
        return _OBLIGATION_TAG + _varint(len(payload)) + payload


def codecs(compiled: Iterable[CompiledRuleSet]) -> Mapping[str, AnswerCodec]:
    """A codec for each compiled version, by its durable-rules name (unique per content)."""
    return {c.name: AnswerCodec(c) for c in compiled}
