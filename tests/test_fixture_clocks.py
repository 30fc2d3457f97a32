"""Issue 14: fixtures compare deadlines in words and due times from given starts; the bundled plans word time alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from liandong.document.load import load_document
from liandong.engine.runtime import DurableRuntime
from liandong.fixtures import load_fixtures, run_fixture_file
from liandong.rulebook import RuleBook

DOCUMENT = """ruleset: clocks
version: "1"
title: 时限
source: {plan: 测试预案, location: tests}
effective_from: 2024-01-01
incident_types: [probe]
boundary: civil-code
inputs:
  x: {type: integer, min: 0, default: 0, meaning: 规模}
units:
  - {id: clinic, name: 医教科, duties: 反馈, citation: 一}
obligations:
  - {id: feedback, text: 10个工作日内反馈, who: [clinic], within: 10wd, starts: complaint_received, citation: 一}
rules:
  - {id: all, title: 全部, citation: 一, when: {all: []}, then: {obligations: [feedback]}}
"""

CASES = """ruleset: clocks
version: "1"
cases:
  - note: right
    incident: {type: probe, facts: {x: 1}}
    want: {deadlines: {feedback: 接到投诉后10个工作日内}}
    clocks:
      starts: {complaint_received: '2026-09-30T15:00:00+08:00'}
      due: {feedback: '2026-10-21T00:00:00+08:00'}
      in_time: {feedback: {'2026-10-21T00:00:00+08:00': true}}
  - note: wrong
    incident: {type: probe, facts: {x: 1}}
    want: {deadlines: {feedback: 10日内}}
    clocks:
      starts: {complaint_received: '2026-09-30T15:00:00+08:00'}
      due: {feedback: '2026-10-20T00:00:00+08:00'}
      in_time: {feedback: {'2026-10-21T00:00:01+08:00': true}}
  - note: past the calendar
    incident: {type: probe, facts: {x: 1}}
    clocks:
      starts: {complaint_received: '2026-12-25T15:00:00+08:00'}
      due: {feedback: unknown}
    want: {obligations: [feedback]}
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    directory = tmp_path / "clocks"
    directory.mkdir()
    (directory / "1.yaml").write_text(DOCUMENT, encoding="utf-8")
    (directory / "1.fixtures.yaml").write_text(CASES, encoding="utf-8")
    return directory


def test_fixture_clocks_pass_and_fail(rules: Path, runtime: DurableRuntime) -> None:
    """A case's due times, in-time verdicts and worded deadlines are compared; each mismatch is one line."""
    book = RuleBook([load_document(rules / "1.yaml")], runtime)
    ran, problems = run_fixture_file(book, rules / "1.fixtures.yaml")
    assert problems == []
    results = {r.note: r for r in ran}
    assert results["right"].passed and results["past the calendar"].passed
    assert sorted(results["wrong"].failures) == [
        "clocks.due.feedback: want 2026-10-20T00:00:00+08:00, got 2026-10-21T00:00:00+08:00",
        "clocks.in_time.feedback: at 2026-10-21T00:00:01+08:00 want True (due 2026-10-21T00:00:00+08:00)",
        "deadlines.feedback: want '10日内', got '接到投诉后10个工作日内'",
    ]


def test_fixture_clocks_refuse_unknown_events_and_naive_times(rules: Path) -> None:
    """A start event outside the vocabulary, or a moment without its offset, is a located fixture problem."""
    path = rules / "1.fixtures.yaml"
    path.write_text(
        CASES.replace(
            "complaint_received: '2026-09-30T15:00:00+08:00'", "complaint_recieved: '2026-09-30T15:00:00'", 1
        ),
        encoding="utf-8",
    )
    loaded = load_fixtures(path)
    messages = [p.message for p in loaded.problems]
    assert any("'complaint_recieved' is not one of" in m for m in messages), messages
    assert any("needs a time with its offset" in m for m in messages), messages
    assert loaded.problems[0].suggestion == "complaint_received"
    assert all(p.line > 1 for p in loaded.problems)
