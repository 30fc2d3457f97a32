"""Rule document checks: every kind of problem is found, located and worded for a rule author."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from liandong.document.model import RuleSetDocument
from liandong.errors import RuleDocumentInvalid
from support.data import DEMO_TEXT, load_cases

CASES = load_cases("invalid_documents.yaml")


def test_demo_document_is_valid(make_doc: Callable[[str], RuleSetDocument]) -> None:
    """The base document of the table below loads without problems."""
    doc = make_doc(DEMO_TEXT)
    assert doc.ruleset == "demo" and len(doc.rules) == 7 and doc.levels[2].then is not None
    assert len(doc.content_hash) == 64


@pytest.mark.parametrize("case", CASES, ids=[str(c["note"]) for c in CASES])
def test_invalid_document(case: dict[str, str], make_doc: Callable[[str], RuleSetDocument]) -> None:
    """A broken document is refused with a problem that names the culprit, where it is written."""
    assert DEMO_TEXT.count(case["old"]) == 1, "the case must replace text that occurs exactly once"
    text = DEMO_TEXT.replace(case["old"], case["new"])
    with pytest.raises(RuleDocumentInvalid) as caught:
        make_doc(text)
    matching = [p for p in caught.value.problems if case["want"] in p.message]
    assert matching, f"no problem says {case['want']!r}; got: {[str(p) for p in caught.value.problems]}"
    problem = matching[0]
    start = DEMO_TEXT.index(case["old"])
    first_line = DEMO_TEXT.count("\n", 0, start) + 1
    last_line = first_line + case["new"].count("\n")
    assert problem.path == "demo.yaml"
    assert problem.line >= 1 and problem.column >= 1
    if case["note"] not in ("empty rules",):
        # The problem points into the replaced text, or at the enclosing entry that lacks something.
        assert first_line - 4 <= problem.line <= last_line, str(problem)
    if "suggestion" in case:
        assert problem.suggestion == case["suggestion"]
        assert f"(did you mean '{case['suggestion']}'?)" in str(problem)
    assert problem.ruleset in ("demo", "")


def test_every_problem_is_reported(make_doc: Callable[[str], RuleSetDocument]) -> None:
    """Several problems in one document are all reported, not only the first."""
    text = (
        DEMO_TEXT.replace("units: [chem]", "units: [chemm]")
        .replace("groups: [combat]", "groups: [combt]")
        .replace("type: boolean", "type: bool")
    )
    with pytest.raises(RuleDocumentInvalid) as caught:
        make_doc(text)
    messages = " | ".join(p.message for p in caught.value.problems)
    assert "unknown unit 'chemm'" in messages
    assert "unknown group 'combt'" in messages
    assert "type 'bool'" in messages
    assert len(caught.value.problems) >= 3


def test_problem_renders_like_a_compiler_error(make_doc: Callable[[str], RuleSetDocument]) -> None:
    """A problem prints as path:line:column: message (did you mean ...?)."""
    text = DEMO_TEXT.replace("units: [chem]", "units: [chemm]")
    with pytest.raises(RuleDocumentInvalid) as caught:
        make_doc(text)
    line = DEMO_TEXT[: DEMO_TEXT.index("units: [chem]")].count("\n") + 1
    problem = caught.value.problems[0]
    assert str(problem).startswith(
        f"demo.yaml:{problem.line}:{problem.column}: rule 'hazmat' names unknown unit 'chemm'"
    )
    assert problem.rule_id == "hazmat"
    assert line - 5 <= problem.line <= line


def test_content_hash_ignores_formatting(make_doc: Callable[[str], RuleSetDocument]) -> None:
    """Comments and layout do not change the content hash; a changed value does."""
    same = make_doc("# a comment\n" + DEMO_TEXT.replace("rank: 1}", "rank:   1 }"))
    other = make_doc(DEMO_TEXT.replace("title: 测试预案", "title: 测试预案二"))
    base = make_doc(DEMO_TEXT)
    assert same.content_hash == base.content_hash
    assert other.content_hash != base.content_hash
