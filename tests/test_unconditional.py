"""A rule with `all: []` applies to every incident, and a plan without levels answers with no level."""

from __future__ import annotations

from liandong.document.load import parse_document
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook

# A plan in the shape of 003 第四篇 (medical disputes): no grades, every paragraph a duty.
NO_LEVELS = """\
ruleset: duties-only
version: "1"
title: 只有程序义务的预案
source: {plan: 只有程序义务的预案, location: sources/plan.md}
effective_from: 2024-01-01
incident_types: [dispute]
boundary: civil-code
inputs:
  complex:
    type: boolean
    default: false
    meaning: 情况复杂
units:
  - {id: office, name: 办公室, duties: 接报, citation: 一}
  - {id: experts, name: 专家组, duties: 会诊, citation: 二}
obligations:
  - {id: report, text: 立即报告, who: [office], within: at_once, citation: 一}
rules:
  - id: always
    title: 每起事件
    citation: 一
    when: {all: []}
    then: {units: [office], obligations: [report]}
  - id: complex-case
    title: 情况复杂
    citation: 二
    when: {complex: true}
    then: {units: [experts]}
"""


def _book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook([parse_document(NO_LEVELS.encode("utf-8"), "duties-only/1.yaml")], runtime)


def test_unconditional_rule_fires_for_every_incident(runtime: DurableRuntime) -> None:
    """`all: []` fires whatever the facts, beside the rules whose conditions hold."""
    book = _book(runtime)
    plain = book.determine(Incident(type="dispute", facts={"complex": False}))
    assert [r.id for r in plain.matched_rules] == ["always"]
    assert [u.id for u in plain.units] == ["office"]
    both = book.determine(Incident(type="dispute", facts={"complex": True}), explain=True)
    assert [r.id for r in both.matched_rules] == ["always", "complex-case"]
    assert both.matched_rules[0].conditions is not None and both.matched_rules[0].conditions.holds


def test_plan_without_levels_applies_with_no_level(runtime: DurableRuntime) -> None:
    """A plan with no levels answers `applies` with its units and obligations, and no level or tier."""
    det = _book(runtime).determine(Incident(type="dispute", facts={"complex": True}))
    assert det.applies is True
    assert det.level is None and det.command_tier == ""
    assert [o.id for o in det.obligations] == ["report"]
