"""Combining the rules that fired into one determination (rules/README.md, "How fired rules combine")."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from liandong.document.model import Citation, Group, Level, Obligation, Rule, RuleSetDocument, Then, Unit
from liandong.engine import trace
from liandong.engine.result import (
    CitationResult,
    CommanderResult,
    Determination,
    GroupResult,
    Incident,
    LevelResult,
    MatchedRule,
    ObligationResult,
    UnitResult,
)
from liandong.errors import EngineFailure


def _citation(c: Citation) -> CitationResult:
    return CitationResult(c.document, c.clause)


def _unit(u: Unit) -> UnitResult:
    return UnitResult(u.id, u.name, u.duties, _citation(u.citation))


class Prepared:
    """A document's answer pieces, built once when it is compiled: results are frozen, so every
    answer can share them instead of rebuilding ~100 objects per evaluation."""

    def __init__(self, doc: RuleSetDocument) -> None:
        self.doc = doc
        self.ranks = {lv.code: lv.rank for lv in doc.levels}
        self.units = {u.id: _unit(u) for u in doc.units}
        self.groups = {
            g.id: GroupResult(g.id, g.name, self.units[g.lead] if g.lead else None, tuple(self.units[m] for m in g.members), g.duties, _citation(g.citation))
            for g in doc.groups
        }
        self.obligations = {
            o.id: ObligationResult(o.id, o.text, tuple(self.units[w] for w in o.who), o.within_seconds, o.within_text, _citation(o.citation))
            for o in doc.obligations
        }
        self.levels = {lv.code: LevelResult(lv.code, lv.name, lv.rank, _citation(lv.citation) if lv.citation else None) for lv in doc.levels}
        self.rules = {r.id: MatchedRule(r.id, r.title, _citation(r.citation), None) for r in doc.rules}


def combine(prepared: Prepared, incident: Incident, facts: Mapping[str, object], fired: Collection[str], explain: bool = False) -> Determination:
    doc = prepared.doc
    fired_rules = [r for r in doc.rules if r.id in fired]  # document order
    ranks = prepared.ranks
    below_every_level = min(ranks.values(), default=0) - 1

    level_rule = max(
        (r for r in fired_rules if r.then.level is not None),
        key=lambda r: ranks[r.then.level or ""],
        default=None,
    )
    decided: Level | None = next((lv for lv in doc.levels if level_rule and lv.code == level_rule.then.level), None)

    # Sources of consequences, most senior first. The decided level's own `then` counts as a rule
    # of that level written after all rules, so a rule that says otherwise at that level wins.
    sources: list[tuple[int, int, Then]] = [
        (ranks[r.then.level] if r.then.level is not None else below_every_level, i, r.then) for i, r in enumerate(fired_rules)
    ]
    if decided is not None and decided.then is not None:
        sources.append((decided.rank, len(fired_rules), decided.then))
    sources.sort(key=lambda s: (-s[0], s[1]))
    thens = [t for _, _, t in sources]

    lead_id = next((t.lead for t in thens if t.lead is not None), None)
    tier = next((t.command_tier for t in thens if t.command_tier is not None), "")
    commanders = next((t.commanders for t in thens if t.commanders is not None), ())
    group_ids = {g for t in thens for g in t.groups}
    groups: list[Group] = [g for g in doc.groups if g.id in group_ids]
    obligation_ids = {o for t in thens for o in t.obligations}
    obligations: list[Obligation] = [o for o in doc.obligations if o.id in obligation_ids]
    # Everyone with a part to play participates: named units, the lead, group leads and members,
    # and whoever owes an obligation.
    unit_ids = {u for t in thens for u in t.units}
    unit_ids.update(m for g in groups for m in g.members)
    unit_ids.update(g.lead for g in groups if g.lead is not None)
    unit_ids.update(w for o in obligations for w in o.who)
    if lead_id is not None:
        unit_ids.add(lead_id)
    by_id = prepared.units
    participants = tuple(u.id for u in doc.units if u.id in unit_ids)
    level = None
    if decided is not None:
        level = prepared.levels[decided.code]

    def matched(rule: Rule) -> MatchedRule:
        if not explain:
            return prepared.rules[rule.id]
        return MatchedRule(rule.id, rule.title, _citation(rule.citation), trace.evaluate(rule.when, facts))

    matched_rules = tuple(matched(r) for r in fired_rules)
    unmatched: tuple[MatchedRule, ...] = ()
    if explain:
        unmatched = tuple(matched(r) for r in doc.rules if r.id not in fired)
        disagree = [m.id for m in matched_rules + unmatched if m.conditions is not None and m.conditions.holds != (m.id in fired)]
        if disagree:
            raise EngineFailure(f"durable-rules and the explanation disagree on rules {', '.join(disagree)} of '{doc.ruleset}' {doc.version}", ruleset=doc.ruleset, rule_id=disagree[0])

    return Determination(
        ruleset=doc.ruleset,
        version=doc.version,
        content_hash=doc.content_hash,
        incident_id=incident.id,
        incident_type=incident.type,
        applies=bool(fired_rules),
        level=level,
        command_tier=tier,
        commanders=tuple(CommanderResult(c.role, c.who) for c in commanders),
        lead=by_id[lead_id] if lead_id is not None else None,
        units=tuple(by_id[u] for u in participants),
        groups=tuple(prepared.groups[g.id] for g in groups),
        obligations=tuple(
            replace(prepared.obligations[o.id], who=tuple(by_id[w] for w in participants)) if o.by_participants else prepared.obligations[o.id]
            for o in obligations
        ),
        matched_rules=matched_rules,
        facts=dict(facts),
        unmatched_rules=unmatched,
    )
