"""Issue 14: fixtures compare deadlines in words and due times from given starts; the bundled plans word time alike."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liandong.document.load import load_document, parse_document
from liandong.document.model import DeadlineKind, Timing
from liandong.engine.runtime import DurableRuntime
from liandong.errors import RuleDocumentInvalid
from liandong.fixtures import load_fixtures, run_fixture_file
from liandong.rulebook import RuleBook
from support.data import BUNDLED

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
    results = {r.note: r for r in run_fixture_file(book, rules / "1.fixtures.yaml")}
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
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_fixtures(path)
    messages = [p.message for p in caught.value.problems]
    assert any("'complaint_recieved' is not one of" in m for m in messages), messages
    assert any("needs a time with its offset" in m for m in messages), messages
    assert caught.value.problems[0].suggestion == "complaint_received"


AT_ONCE_WORDS = ("立即", "第一时间", "零时间", "即发即报")
PROMPTLY_WORDS = ("及时", "迅速", "随时")
# A number the plan gives (20分钟内, 1小时内, 半小时内, 5日内, 10个工作日内, 8:00点前, 当天).
NUMBER = re.compile(r"(\d+|半)(分钟|小时|日|个工作日)内|\d+:\d\d点?前|当天")


def _bundled() -> list[Path]:
    return sorted(p for p in BUNDLED.glob("*/*.yaml") if not p.name.endswith(".fixtures.yaml"))


@pytest.mark.parametrize("path", _bundled(), ids=lambda p: p.parent.name)
def test_bundled_documents_word_time_alike(path: Path) -> None:
    """In every bundled document an obligation whose words say 立即/第一时间/零时间/即发即报 is due at once, one that
    says only 及时/迅速/随时 is promptly, and one that gives a number has a deadline, never the other way round."""
    doc = parse_document(path.read_bytes(), str(path))
    for o in doc.obligations:
        words = o.text
        if NUMBER.search(words):
            assert o.deadline.kind not in (DeadlineKind.NONE, DeadlineKind.PROMPTLY), o.id
        elif any(w in words for w in AT_ONCE_WORDS):
            assert o.timing is Timing.AT_ONCE, o.id
        elif any(w in words for w in PROMPTLY_WORDS):
            assert o.timing is Timing.PROMPTLY, o.id
        else:
            assert o.timing is Timing.NONE, o.id
