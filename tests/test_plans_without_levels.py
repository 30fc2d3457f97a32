"""The three plans that grade nothing (issue 14): they apply with no level, a plan may declare no inputs
when a report without facts means something, and no incident type is claimed by two bundled rule sets."""

from __future__ import annotations

import pytest

from liandong.document.load import load_tree, parse_document
from liandong.document.model import AllOf
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import InvalidIncident, RuleDocumentInvalid
from liandong.rulebook import RuleBook
from support.data import BUNDLED

PLANS_WITHOUT_LEVELS = ("medical-dispute", "epidemic-joint-prevention", "information-reporting")

NO_INPUTS = """\
ruleset: standing-mechanism
version: "1"
title: 常设工作机制
source: {plan: 常设工作机制, location: sources/plan.md}
effective_from: 2024-01-01
incident_types: [standing]
boundary: civil-code
empty_report: %s
inputs: {}
units:
  - {id: convener, name: 召集人, duties: 召集, citation: 一, member: false}
rules:
  - id: always
    title: 机制运行
    citation: 一
    when: {all: []}
    then: {lead: convener}
"""


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(BUNDLED, runtime)


def test_no_incident_type_is_claimed_twice(book: RuleBook) -> None:
    """Each incident type of the bundled documents is claimed by exactly one rule set."""
    claims = book.incident_types()
    assert {t: r for t, r in claims.items() if len(r) != 1} == {}
    assert claims["medical_dispute"] == ("medical-dispute",)
    assert claims["epidemic"] == ("epidemic-joint-prevention",)
    assert claims["information_report"] == ("information-reporting",)


@pytest.mark.parametrize("ruleset", PLANS_WITHOUT_LEVELS)
def test_plan_without_levels_has_an_unconditional_rule(ruleset: str) -> None:
    """A plan that grades nothing declares no levels and says what it requires of every incident in an `all: []` rule."""
    (doc,) = [d for d in load_tree(BUNDLED) if d.ruleset == ruleset]
    assert doc.levels == ()
    assert any(isinstance(r.when, AllOf) and r.when.items == () for r in doc.rules), ruleset


def test_epidemic_answers_with_no_facts_and_refuses_any(book: RuleBook) -> None:
    """An epidemic with no facts gets the whole mechanism with no level and nothing assumed; a fact sent is refused."""
    det = book.determine(Incident(type="epidemic", facts={}))
    assert det.applies is True and det.level is None and det.assumed == ()
    assert [g.id for g in det.groups] == ["general", "screening", "publicity", "supplies", "supervision", "stability"]
    with pytest.raises(InvalidIncident) as refused:
        book.determine(Incident(type="epidemic", facts={"cases": 3}))
    assert "cases" in str(refused.value)


def test_no_inputs_is_allowed_where_an_empty_report_means_something(runtime: DurableRuntime) -> None:
    """`inputs: {}` with `empty_report: meaningful` is valid and answers every incident of its type."""
    doc = parse_document((NO_INPUTS % "meaningful").encode("utf-8"), "standing-mechanism/1.yaml")
    det = RuleBook([doc], runtime).determine(Incident(type="standing", facts={}))
    assert det.applies is True and det.lead is not None and det.lead.id == "convener"


def test_no_inputs_without_a_meaningful_empty_report_is_refused() -> None:
    """`inputs: {}` where empty reports are refused is a located error naming `empty_report: meaningful`."""
    with pytest.raises(RuleDocumentInvalid) as invalid:
        parse_document((NO_INPUTS % "refused").encode("utf-8"), "standing-mechanism/1.yaml")
    (problem,) = invalid.value.problems
    assert problem.key == "inputs" and problem.line == 9
    assert "empty_report: meaningful" in problem.message
