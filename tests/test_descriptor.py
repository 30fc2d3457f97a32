"""Incident facts are checked against the rule set's inputs before any rule sees them."""

from __future__ import annotations

import pytest

from liandong.engine.result import Incident
from liandong.errors import InvalidIncident
from liandong.rulebook import RuleBook
from support.data import load_cases

CASES = load_cases("descriptors.yaml")


@pytest.mark.parametrize("case", CASES, ids=[str(c["note"]) for c in CASES])
def test_descriptor(case: dict[str, object], demo_book: RuleBook) -> None:
    """Facts are normalized, or refused with every violation and its reason."""
    incident = Incident(type="demo", facts=case["facts"])  # type: ignore[arg-type]
    violations = case.get("want_violations")
    if violations:
        with pytest.raises(InvalidIncident) as caught:
            demo_book.determine(incident)
        got = {v.field: v.reason for v in caught.value.violations}
        assert got == violations
        assert caught.value.code == "invalid_incident"
        for v in caught.value.violations:
            assert v.field in caught.value.message
        return
    det = demo_book.determine(incident)
    for key, value in dict(case.get("want_facts", {})).items():  # type: ignore[call-overload]
        assert det.facts[key] == value and type(det.facts[key]) is type(value)
    for key in case.get("want_absent", []):  # type: ignore[attr-defined]
        assert key not in det.facts


def test_unknown_field_suggests_the_input(demo_book: RuleBook) -> None:
    """A misspelt fact name says which input was probably meant."""
    with pytest.raises(InvalidIncident) as caught:
        demo_book.determine(Incident(type="demo", facts={"death": 3}))
    assert "did you mean 'deaths'?" in caught.value.violations[0].description


def test_too_many_facts_are_refused(demo_book: RuleBook) -> None:
    """Thousands of facts are refused as one violation, not checked one by one."""
    with pytest.raises(InvalidIncident) as caught:
        demo_book.determine(Incident(type="demo", facts={f"f{i}": i for i in range(5000)}))
    assert [v.reason for v in caught.value.violations] == ["too_many"]
