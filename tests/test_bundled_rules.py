"""The bundled rule sets under rules/: every document is valid and every fixture passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from liandong.document.load import document_paths, load_tree
from liandong.engine.runtime import DurableRuntime
from liandong.fixtures import CaseResult, fixture_path, load_fixtures, run_case
from liandong.rulebook import RuleBook
from support.data import BUNDLED, ROOT

BUNDLED_RULE_SETS = (
    "fire-linkage",
    "township-mass-incident",
    "flood-control",
    "coal-mine-linkage",
    "food-drug-safety",
    "township-social-security",
    "medical-dispute",
    "epidemic-joint-prevention",
    "information-reporting",
)


def _cases() -> list[tuple[Path, str]]:
    paths, _ = document_paths(BUNDLED)
    out = []
    for path in paths:
        fixtures = fixture_path(path)
        if fixtures.exists():
            out.extend((fixtures, case.note) for case in load_fixtures(fixtures).cases)
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(BUNDLED, runtime)


def test_bundled_rulesets_load() -> None:
    """The bundled plans load, each with fixtures beside it."""
    docs = load_tree(BUNDLED)
    assert sorted({d.ruleset for d in docs}) == sorted(BUNDLED_RULE_SETS)
    for doc in docs:
        assert fixture_path(Path(doc.path)).exists() or fixture_path(ROOT / doc.path).exists()


def test_every_rule_has_a_fixture_that_fires_it(book: RuleBook) -> None:
    """Fixtures cover every rule of every bundled document: each rule fires in at least one case."""
    paths, _ = document_paths(BUNDLED)
    for path in paths:
        fixture = load_fixtures(fixture_path(path))
        compiled = next(c for c in book.versions(fixture.ruleset) if c.document.version == fixture.version)
        fired: set[str] = set()
        for case in fixture.cases:
            if case.want_error_code:
                continue
            det = book.determine(case.incident, fixture.ruleset, fixture.version)
            fired.update(r.id for r in det.matched_rules)
        never = [r.id for r in compiled.document.rules if r.id not in fired]
        assert not never, f"{path}: no fixture fires {never}"


@pytest.mark.parametrize(("path", "note"), CASES, ids=[f"{p.parent.name}: {n}" for p, n in CASES])
def test_fixture(path: Path, note: str, book: RuleBook) -> None:
    """The determination matches what the fixture wants."""
    fixture = load_fixtures(path)
    case = next(c for c in fixture.cases if c.note == note)
    result: CaseResult = run_case(book, fixture, case)
    assert result.passed, "\n".join(result.failures)
