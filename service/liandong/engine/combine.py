"""Combining the rules that fired into one determination (rules/README.md, "How fired rules combine").

Everything that does not depend on which rules fired is worked out once per document, in
`Prepared`: the result objects answers share, the order of seniority of every source of
consequences (each rule's `then`, and each level's own), and what each source brings into an
answer, as bits of one integer (a bit per unit, group and obligation of the document). Combining
an answer is then a walk over the fired sources that ORs their bits, and one look-up of the
units, groups and obligations those bits stand for.

What an answer takes from the rules that fired depends on nothing else, and answers repeat few
sets of fired rules, so that walk is kept per set (`Prepared.parts`). Which rules fire is still
durable-rules' answer for every incident: this keeps only the document's arithmetic on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import NamedTuple

from liandong.document.model import RuleSetDocument, Then, Unit
from liandong.engine import trace
from liandong.engine.result import (
    AssumedInput,
    CommanderResult,
    Determination,
    GroupResult,
    Incident,
    LevelResult,
    MatchedRule,
    ObligationResult,
    UnitResult,
    determination,
)
from liandong.errors import EngineFailure

# Answers repeat few combinations of units, groups and obligations (20 000 varied fire incidents of
# tests/bench fired 3 978 different sets of rules, but made 348 combinations), so the pieces of
# each combination are kept, up to this many per document; then the store starts afresh.
PIECES_CACHE_SIZE = 1024
# The parts of an answer per set of fired rules, up to this many per document (the same 20 000
# incidents fired 3 978 sets); then the store starts afresh.
PARTS_CACHE_SIZE = 4096

Pieces = tuple[tuple[UnitResult, ...], tuple[GroupResult, ...], tuple[ObligationResult, ...]]


class Parts(NamedTuple):
    """What an answer takes from the rules that fired: everything but the incident's own facts."""

    positions: tuple[int, ...]  # the fired rules' positions in the document, in document order
    level: LevelResult | None
    command_tier: str
    commanders: tuple[CommanderResult, ...]
    lead: UnitResult | None
    units: tuple[UnitResult, ...]
    groups: tuple[GroupResult, ...]
    obligations: tuple[ObligationResult, ...]
    matched_rules: tuple[MatchedRule, ...]  # without condition traces


def _unit(u: Unit) -> UnitResult:
    return UnitResult(u.id, u.name, u.duties, u.citation, u.citations, u.member)


class _Source:
    """One `then` that may contribute to an answer: a rule's, or a level's own."""

    __slots__ = ("lead", "command_tier", "commanders", "bits")

    def __init__(self, then: Then, prepared: Prepared) -> None:
        doc = prepared.doc
        self.lead = then.lead
        self.command_tier = then.command_tier
        self.commanders = (
            None if then.commanders is None else tuple(CommanderResult(c.role, c.who) for c in then.commanders)
        )
        # Everyone with a part to play participates: named units, group leads and members, and
        # whoever owes an obligation. (The answer's lead is added per answer: only one lead counts.)
        unit_bit = prepared._unit_bit
        bits = 0
        for u in then.units:
            bits |= unit_bit[u]
        for i, g in enumerate(doc.groups):
            if g.id in then.groups:
                bits |= prepared._group_bit(i)
                for m in g.members:
                    bits |= unit_bit[m]
                if g.lead is not None:
                    bits |= unit_bit[g.lead]
        for i, o in enumerate(doc.obligations):
            if o.id in then.obligations:
                bits |= prepared._obligation_bit(i)
                for w in o.who:
                    bits |= unit_bit[w]
        self.bits = bits


class Prepared:
    """A document's answer pieces, built once when it is compiled: results are frozen, so every
    answer can share them instead of rebuilding ~100 objects per evaluation. The document must be
    checked (unique ids, every reference declared), as every compiled document is."""

    def __init__(self, doc: RuleSetDocument) -> None:
        self.doc = doc
        self.ranks = {lv.code: lv.rank for lv in doc.levels}
        self.units = {u.id: _unit(u) for u in doc.units}
        self.groups = {
            g.id: GroupResult(
                g.id,
                g.name,
                self.units[g.lead] if g.lead else None,
                tuple(self.units[m] for m in g.members),
                g.duties,
                g.citation,
                g.citations,
            )
            for g in doc.groups
        }
        self.obligations = {
            o.id: ObligationResult(
                o.id,
                o.text,
                tuple(self.units[w] for w in o.who),
                o.within_seconds,
                o.within_text,
                o.citation,
                o.citations,
                o.timing,
                o.deadline,
            )
            for o in doc.obligations
        }
        self.levels = {lv.code: LevelResult(lv.code, lv.name, lv.rank, lv.citation, lv.citations) for lv in doc.levels}
        # Inputs with a default, which an answer lists as assumed when the caller did not send them.
        self.defaults = tuple(
            (spec.name, AssumedInput(spec.name, spec.default, spec.meaning))
            for spec in doc.inputs
            if spec.default is not None
        )
        self.rules = {r.id: MatchedRule(r.id, r.title, r.citation, None, r.citations) for r in doc.rules}

        # Bits of an answer's contents, in catalogue order (the order answers list them in): units
        # first, then groups, then obligations, so ascending bits are document order in each.
        self._unit_bit = {u.id: 1 << i for i, u in enumerate(doc.units)}
        self._pieces: dict[int, Pieces] = {}
        self._parts: dict[tuple[str, ...], Parts] = {}

        # Rules by position in the document, the order of matched_rules.
        self._position = {r.id: i for i, r in enumerate(doc.rules)}
        self._rule_results = tuple(self.rules[r.id] for r in doc.rules)
        # The level each rule decides, as (code, rank), or None for a rule that sets no level.
        self._rule_level = tuple(
            (r.then.level, self.ranks[r.then.level]) if r.then.level is not None else None for r in doc.rules
        )

        # Sources of consequences, most senior first: by rank (a rule that sets no level ranks below
        # every level), ties to the rule written first, and a level's own `then` counting as a rule
        # of that level written after all rules, so a rule that says otherwise at that level wins.
        below_every_level = min(self.ranks.values(), default=0) - 1
        after_all_rules = len(doc.rules)
        keyed: list[tuple[int, int, Then, str]] = [
            (-(self.ranks[r.then.level] if r.then.level is not None else below_every_level), i, r.then, r.id)
            for i, r in enumerate(doc.rules)
        ]
        keyed += [(-lv.rank, after_all_rules, lv.then, lv.code) for lv in doc.levels if lv.then is not None]
        keyed.sort(key=lambda k: (k[0], k[1]))
        self._sources = tuple(_Source(then, self) for _, _, then, _ in keyed)
        # Where each rule's `then` (by the rule's position) and each level's own stand in that order.
        rule_seniority = [0] * len(doc.rules)
        self._level_seniority: dict[str, int] = {}
        for n, (_, i, _, ident) in enumerate(keyed):
            if i == after_all_rules:
                self._level_seniority[ident] = n
            else:
                rule_seniority[i] = n
        self._rule_seniority = tuple(rule_seniority)

    def _group_bit(self, position: int) -> int:
        return 1 << (len(self.doc.units) + position)

    def _obligation_bit(self, position: int) -> int:
        return 1 << (len(self.doc.units) + len(self.doc.groups) + position)

    def pieces(self, bits: int) -> Pieces:
        """The units, groups and obligations that these bits stand for, in document order."""
        found = self._pieces.get(bits)
        if found is None:
            units = tuple(r for i, r in enumerate(self.units.values()) if bits >> i & 1)
            groups = tuple(r for i, r in enumerate(self.groups.values()) if self._group_bit(i) & bits)
            members = tuple(u for u in units if u.member)
            obligations = tuple(
                (
                    dataclasses.replace(r, who=units)
                    if o.by_participants
                    else dataclasses.replace(r, who=members)
                    if o.by_members
                    else r
                )
                for i, (o, r) in enumerate(zip(self.doc.obligations, self.obligations.values(), strict=True))
                if self._obligation_bit(i) & bits
            )
            found = (units, groups, obligations)
            if len(self._pieces) >= PIECES_CACHE_SIZE:
                self._pieces.clear()  # clear() is atomic: evicting entries one by one could race between threads
            self._pieces[bits] = found
        return found

    def parts(self, fired: Collection[str]) -> Parts:
        """What an answer takes from these fired rules (in any order, repeated, or naming rules the
        document lacks, which count for nothing)."""
        key = fired if type(fired) is tuple else tuple(fired)
        found = self._parts.get(key)
        if found is None:
            found = self._combine(fired)
            if len(self._parts) >= PARTS_CACHE_SIZE:
                self._parts.clear()  # clear() is atomic: evicting entries one by one could race between threads
            self._parts[key] = found
        return found

    def _combine(self, fired: Collection[str]) -> Parts:
        position = self._position
        positions = tuple(sorted(map(position.__getitem__, position.keys() & fired)))  # document order, each once

        # The level: the highest rank any fired rule sets, the first such rule on a tie.
        rule_level = self._rule_level
        decided: tuple[str, int] | None = None
        for p in positions:
            lv = rule_level[p]
            if lv is not None and (decided is None or lv[1] > decided[1]):
                decided = lv

        # The fired sources, most senior first; the first to set lead, tier or commanders wins.
        rule_seniority = self._rule_seniority
        order = [rule_seniority[p] for p in positions]
        if decided is not None:
            level_then = self._level_seniority.get(decided[0])
            if level_then is not None:
                order.append(level_then)
        order.sort()
        sources = self._sources
        lead_id: str | None = None
        tier: str | None = None
        commanders: tuple[CommanderResult, ...] | None = None
        bits = 0
        for n in order:
            s = sources[n]
            bits |= s.bits
            if lead_id is None:
                lead_id = s.lead
            if tier is None:
                tier = s.command_tier
            if commanders is None:
                commanders = s.commanders
        if lead_id is not None:
            bits |= self._unit_bit[lead_id]
        units, groups, obligations = self.pieces(bits)
        rule_results = self._rule_results
        return Parts(
            positions,
            self.levels[decided[0]] if decided is not None else None,
            tier or "",
            commanders or (),
            self.units[lead_id] if lead_id is not None else None,
            units,
            groups,
            obligations,
            tuple([rule_results[p] for p in positions]),
        )


def combine(
    prepared: Prepared, incident: Incident, facts: Mapping[str, object], fired: Collection[str], explain: bool = False
) -> Determination:
    doc = prepared.doc
    parts = prepared.parts(fired)
    positions = parts.positions
    if not explain:
        matched_rules = parts.matched_rules
        unmatched: tuple[MatchedRule, ...] = ()
    else:
        rules = doc.rules
        fired_positions = set(positions)

        def matched(p: int) -> MatchedRule:
            rule = rules[p]
            return MatchedRule(rule.id, rule.title, rule.citation, trace.evaluate(rule.when, facts), rule.citations)

        matched_rules = tuple([matched(p) for p in positions])
        unmatched = tuple([matched(p) for p in range(len(rules)) if p not in fired_positions])
        fired_ids = {rules[p].id for p in positions}
        disagree = [
            m.id
            for m in matched_rules + unmatched
            if m.conditions is not None and m.conditions.holds != (m.id in fired_ids)
        ]
        if disagree:
            raise EngineFailure(
                f"durable-rules and the explanation disagree on rules {', '.join(disagree)} of '{doc.ruleset}' {doc.version}",
                ruleset=doc.ruleset,
                rule_id=disagree[0],
            )

    return determination(
        ruleset=doc.ruleset,
        version=doc.version,
        content_hash=doc.content_hash,
        incident_id=incident.id,
        incident_type=incident.type,
        applies=bool(positions),
        level=parts.level,
        command_tier=parts.command_tier,
        commanders=parts.commanders,
        lead=parts.lead,
        units=parts.units,
        groups=parts.groups,
        obligations=parts.obligations,
        matched_rules=matched_rules,
        facts=dict(facts),
        unmatched_rules=unmatched,
        assumed=assumed(prepared, incident),
    )


def assumed(prepared: Prepared, incident: Incident) -> tuple[AssumedInput, ...]:
    """The inputs this answer took from their defaults: those the caller did not send (or sent as null)."""
    sent = incident.facts
    return tuple([a for name, a in prepared.defaults if sent.get(name) is None])
