"""Every comparison operator and statutory word, under both boundary conventions, through durable-rules."""

from __future__ import annotations

import json

import pytest
import yaml

from liandong.document.load import parse_document
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from support.data import load_cases

TEMPLATE = """
ruleset: ops
version: "1"
title: operators
source: {{plan: 测试, location: tests}}
effective_from: 2024-01-01
incident_types: [probe]
boundary: {boundary}
empty_report: meaningful  # `{{}}` probes conditions on inputs that are all absent or defaulted
inputs:
  x: {{type: integer, default: 0, meaning: x}}
  y: {{type: number, optional: true, meaning: y}}
  flag: {{type: boolean, default: false, meaning: flag}}
  kind: {{type: enum, values: {{a: 甲, b: 乙, c: 丙}}, default: a, meaning: kind}}
rules:
  - id: r
    title: probe
    citation: 第一条
    when: {when}
    then: {{obligations: [o]}}
obligations:
  - {{id: o, text: 做, citation: 第一条}}
"""

CASES = load_cases("operators.yaml")


@pytest.mark.parametrize("case", CASES, ids=[str(c["note"]) for c in CASES])
def test_operator(case: dict[str, object], runtime: DurableRuntime) -> None:
    """The rule fires exactly for the facts the case says the condition holds for."""
    text = TEMPLATE.format(boundary=case["boundary"], when=json.dumps(case["when"], ensure_ascii=False))
    book = RuleBook([parse_document(text.encode(), "ops.yaml")], runtime)
    holds = case["holds"]
    assert isinstance(holds, dict)
    for facts_text, expected in holds.items():
        facts = yaml.safe_load(facts_text)
        det = book.determine(Incident(type="probe", facts=facts), explain=True)
        assert det.applies is expected, f"{case['note']}: facts {facts_text}"
        if expected:
            trace = det.matched_rules[0].conditions
            assert trace is not None and trace.holds
