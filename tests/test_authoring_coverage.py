"""`liandong rules test --coverage`: rule and boundary coverage, 100% on every bundled set, and the
holes named when a fixture goes missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from liandong import coverage
from liandong.cli import EXIT_FAILED, EXIT_OK, main
from liandong.document.load import document_paths, parse_document
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from support.data import BUNDLED
from support.rules import copy_bundled

BUNDLED_SETS = sorted({p.parent.name for p in BUNDLED.glob("*/*.yaml") if not p.name.endswith(".fixtures.yaml")})


@pytest.fixture(scope="module")
def bundled_book() -> RuleBook:
    return RuleBook.load(BUNDLED, DurableRuntime())


@pytest.mark.parametrize("name", BUNDLED_SETS)
def test_bundled_sets_reach_full_coverage(bundled_book: RuleBook, name: str) -> None:
    """Every bundled rule set's fixtures reach 100% rule and 100% boundary coverage."""
    reports = coverage.for_documents(bundled_book, document_paths(BUNDLED / name)[0])
    assert reports, f"{name} has no fixtures"
    for report in reports:
        assert report.text().count("\n") == 0, report.text()
        assert (report.rule_percent, report.boundary_percent) == (100.0, 100.0)


def test_a_missing_boundary_case_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the case at 100 participants the boundary of 100人以下 is reported untested, and the run fails."""
    copy_bundled(tmp_path, "township-mass-incident")
    fixtures = tmp_path / "township-mass-incident" / "2024.1.fixtures.yaml"
    text = fixtures.read_text(encoding="utf-8")
    book = RuleBook.load(tmp_path, DurableRuntime())
    before = coverage.for_documents(book, document_paths(tmp_path)[0])[0]
    assert before.boundary_percent == 100.0
    # drop every case sending exactly 100 participants
    data = yaml.safe_load(text)
    kept = [c for c in data["cases"] if c["incident"].get("facts", {}).get("participants") != 100]
    assert len(kept) < len(data["cases"])
    data["cases"] = kept
    fixtures.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    after = coverage.for_documents(book, document_paths(tmp_path)[0])[0]
    assert after.boundary_percent < 100.0
    untested = [b for b in after.boundaries if not b.covered]
    assert any(b.input == "participants" and 100 in b.values for b in untested)
    code = main(["rules", "test", "--coverage", "--fail-under", "100", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == EXIT_FAILED
    assert "participants" in out and "(untested)" in out
    assert "is below 100%" in err


def test_coverage_json(capsys: pytest.CaptureFixture[str]) -> None:
    """--coverage --json gives each set's percentages and what is uncovered, for CI."""
    assert main(["rules", "test", "--coverage", "--json", str(BUNDLED / "township-mass-incident")]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] == 0
    [report] = out["coverage"]
    assert report["rule_coverage"] == 100.0 and report["boundary_coverage"] == 100.0
    assert report["uncovered"] == [] and report["boundaries_untested"] == []


STEPS = """\
ruleset: steps
version: "1"
title: 步长
source: {plan: 步长, location: sources/plan.md}
effective_from: 2024-01-01
incident_types: [s]
boundary: accident-grading
inputs:
  rain_mm: {type: number, min: 0, default: 0, meaning: 降水}
  level_m: {type: number, step: 0.01, default: 0, meaning: 水位}
  count: {type: integer, min: 0, default: 0, meaning: 人数}
units:
  - {id: office, name: 办公室, duties: 值守, citation: 一}
rules:
  - {id: rain, title: 雨, citation: 一, when: {rain_mm: {超过: 250}}, then: {units: [office]}}
  - {id: level, title: 水, citation: 一, when: {level_m: {以上: 452.5}}, then: {units: [office]}}
  - {id: count, title: 人, citation: 一, when: {count: {以上: 10}}, then: {units: [office]}}
  - {id: half, title: 半, citation: 一, when: {count: {gt: 999.5}}, then: {units: [office]}}
"""


def test_boundary_values_follow_the_step() -> None:
    """Integers step by 1, a declared step is used, else one digit finer than the threshold is written."""
    doc = parse_document(STEPS.encode(), "steps.yaml")
    found = {(rule, values) for rule, _, _, values, _ in coverage.boundaries(doc)}
    assert found == {
        ("rain", (250.0, 250.1)),
        ("level", (452.5, 452.49)),
        ("count", (10.0, 9.0)),
        ("half", (999, 1000)),
    }


def test_the_other_side_counts_within_one_step() -> None:
    """A case within one step beyond the threshold tests its other side; one further away does not."""
    assert coverage._beyond(9999999.99, 10000000.0, 9999999.9)
    assert not coverage._beyond(9999999.0, 10000000.0, 9999999.9)
    assert not coverage._beyond(10000000.0, 10000000.0, 9999999.9)
    assert coverage._beyond(250.05, 250.0, 250.1)
