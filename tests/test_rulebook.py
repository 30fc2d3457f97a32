"""Choosing a rule set and version for a request, and loading whole rules directories."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from liandong.document.load import load_tree
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import AmbiguousIncidentType, RuleDocumentInvalid, RuleSetNotFound, UnknownIncidentType
from liandong.rulebook import RuleBook
from support.data import DEMO_TEXT


def write_version(
    root: Path, version: str, effective_from: str, *, ruleset: str = "demo", types: str = "[demo]", extra: str = ""
) -> Path:
    text = DEMO_TEXT.replace('version: "2024.1"', f'version: "{version}"').replace(
        "effective_from: 2024-01-01", f"effective_from: {effective_from}{extra}"
    )
    text = text.replace("ruleset: demo", f"ruleset: {ruleset}").replace(
        "incident_types: [demo]", f"incident_types: {types}"
    )
    path = root / ruleset / f"{version}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def two_versions(tmp_path: Path, runtime: DurableRuntime) -> RuleBook:
    write_version(tmp_path, "2024.1", "2024-01-01")
    # 2025.1 changes the hazmat rule's unit so the versions answer differently.
    path = write_version(tmp_path, "2025.1", "2025-01-01")
    path.write_text(path.read_text(encoding="utf-8").replace("units: [chem]", "units: [police]"), encoding="utf-8")
    return RuleBook.load(tmp_path, runtime, clock=lambda: dt.datetime(2025, 6, 1, tzinfo=dt.UTC))


def test_version_in_force_at_occurred_at(two_versions: RuleBook) -> None:
    """A request gets the version whose effective_from is the latest not after occurred_at."""
    old = two_versions.determine(
        Incident(type="demo", facts={"hazmat": True}, occurred_at=dt.datetime(2024, 12, 31, 12))
    )
    new = two_versions.determine(
        Incident(type="demo", facts={"hazmat": True}, occurred_at=dt.datetime(2025, 1, 1, 0, 0))
    )
    assert (old.version, new.version) == ("2024.1", "2025.1")
    assert "chem" in {u.id for u in old.units} and "chem" not in {u.id for u in new.units}
    assert old.content_hash != new.content_hash


def test_occurred_at_is_read_in_beijing_time(two_versions: RuleBook) -> None:
    """16:30 UTC on 31 December is already 1 January in Beijing, where the plan is in force."""
    det = two_versions.determine(
        Incident(type="demo", facts={"hazmat": True}, occurred_at=dt.datetime(2024, 12, 31, 16, 30, tzinfo=dt.UTC))
    )
    assert det.version == "2025.1"


def test_default_is_now(two_versions: RuleBook) -> None:
    """Without occurred_at, the version in force now (by the injected clock) answers."""
    assert two_versions.determine(Incident(type="demo", facts={"hazmat": True})).version == "2025.1"


def test_pinned_version(two_versions: RuleBook) -> None:
    """A pinned version answers even when another is in force."""
    assert two_versions.determine(Incident(type="demo", facts={"hazmat": True}), version="2024.1").version == "2024.1"


def test_unknown_version_suggests(two_versions: RuleBook) -> None:
    """An unknown version is RuleSetNotFound listing what is loaded."""
    with pytest.raises(RuleSetNotFound) as caught:
        two_versions.determine(Incident(type="demo", facts={"hazmat": True}), version="2025.2")
    assert "loaded: 2024.1, 2025.1" in caught.value.message and caught.value.suggestion == "2025.1"


def test_nothing_in_force_before_first_version(two_versions: RuleBook) -> None:
    """An incident before any version took effect is refused, naming the day."""
    with pytest.raises(RuleSetNotFound) as caught:
        two_versions.determine(Incident(type="demo", facts={"hazmat": True}, occurred_at=dt.datetime(2023, 5, 1)))
    assert "2023-05-01" in caught.value.message


def test_effective_until_ends_a_version(tmp_path: Path, runtime: DurableRuntime) -> None:
    """After effective_until no version is in force; on that day it still is."""
    write_version(tmp_path, "2024.1", "2024-01-01", extra="\neffective_until: 2024-06-30")
    book = RuleBook.load(tmp_path, runtime)
    assert (
        book.determine(Incident(type="demo", facts={"hazmat": True}, occurred_at=dt.datetime(2024, 6, 30, 23))).version
        == "2024.1"
    )
    with pytest.raises(RuleSetNotFound):
        book.determine(Incident(type="demo", facts={"hazmat": True}, occurred_at=dt.datetime(2024, 7, 1)))


def test_unknown_incident_type(two_versions: RuleBook) -> None:
    """A type no rule set claims is UnknownIncidentType with the known types and a suggestion."""
    with pytest.raises(UnknownIncidentType) as caught:
        two_versions.determine(Incident(type="demos", facts={}))
    assert caught.value.known == ("demo",) and caught.value.suggestion == "demo"


def test_unknown_ruleset(two_versions: RuleBook) -> None:
    """Naming a rule set that is not loaded is RuleSetNotFound with a suggestion."""
    with pytest.raises(RuleSetNotFound) as caught:
        two_versions.determine(Incident(type="demo", facts={"hazmat": True}), ruleset="dem")
    assert caught.value.suggestion == "demo"


def test_ambiguous_type_needs_a_ruleset(tmp_path: Path, runtime: DurableRuntime) -> None:
    """When two rule sets claim a type, the caller must name one; naming one works."""
    write_version(tmp_path, "2024.1", "2024-01-01")
    write_version(tmp_path, "2024.1", "2024-01-01", ruleset="other")
    book = RuleBook.load(tmp_path, runtime)
    with pytest.raises(AmbiguousIncidentType) as caught:
        book.determine(Incident(type="demo", facts={"hazmat": True}))
    assert caught.value.candidates == ("demo", "other")
    assert book.determine(Incident(type="demo", facts={"hazmat": True}), ruleset="other").ruleset == "other"


def test_versions_that_collide(tmp_path: Path) -> None:
    """Two versions of one rule set taking effect on the same day are refused."""
    write_version(tmp_path, "2024.1", "2024-01-01")
    write_version(tmp_path, "2024.2", "2024-01-01")
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_tree(tmp_path)
    assert any("both take effect on 2024-01-01" in p.message for p in caught.value.problems)


def test_path_must_match_ids(tmp_path: Path) -> None:
    """A document's ruleset and version must match its directory and file name."""
    path = write_version(tmp_path, "2024.1", "2024-01-01")
    path.rename(path.with_name("2024.2.yaml"))
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_tree(tmp_path)
    assert any("does not match its file name '2024.2.yaml'" in p.message for p in caught.value.problems)


def test_symlink_outside_rules_dir_is_refused(tmp_path: Path) -> None:
    """A document that links outside the rules directory is refused, not read."""
    rules = tmp_path / "rules"
    write_version(rules, "2024.1", "2024-01-01")
    outside = write_version(tmp_path / "elsewhere", "2024.2", "2024-02-01")
    os.symlink(outside, rules / "demo" / "2024.2.yaml")
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_tree(rules)
    assert any("points outside the rules directory" in p.message for p in caught.value.problems)


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    """A rules directory with no documents is an error, not an empty service."""
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_tree(tmp_path)
    assert "no rule documents found" in caught.value.problems[0].message


def test_same_content_registers_once(tmp_path: Path, runtime: DurableRuntime) -> None:
    """Loading the same content twice reuses its durable-rules ruleset, which cannot be replaced."""
    write_version(tmp_path, "2024.1", "2024-01-01")
    first = RuleBook.load(tmp_path, runtime)
    before = runtime.registered
    second = RuleBook.load(tmp_path, runtime)
    assert runtime.registered == before
    assert first.versions("demo")[0].name == second.versions("demo")[0].name
    assert second.determine(Incident(type="demo", facts={"deaths": 3})).level is not None
