"""`liandong rules diff OLD NEW`: the input regions whose answer changes, each with an example
incident, from the thresholds of both documents; exit 1 when anything changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liandong.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from liandong.document.diff import Change, NotComparable, diff
from liandong.document.load import load_document, parse_document
from support.data import BUNDLED
from support.rules import replace_once

FIRE = BUNDLED / "fire-linkage" / "2024.1.yaml"
TOWNSHIP = BUNDLED / "township-mass-incident" / "2024.1.yaml"


def _changes(path: Path, old: str, new: str) -> list[Change]:
    before = load_document(path)
    text = replace_once(path.read_text(encoding="utf-8"), old, new)
    return diff(before, parse_document(text.encode(), "new.yaml"))


def test_same_document_has_no_change() -> None:
    """A document compared with itself changes nothing."""
    assert diff(load_document(FIRE), load_document(FIRE)) == []


def test_threshold_moved() -> None:
    """Moving grade-II's lower death threshold from 10 to 12 changes the level at deaths 10..11 only."""
    changes = _changes(FIRE, "- deaths: {以上: 10, 以下: 30}", "- deaths: {以上: 12, 以下: 30}")
    levels = [c for c in changes if ("level", "II", "III") in c.fields]
    assert len(levels) == 1
    assert all(region.startswith(("deaths = 10", "deaths in 10..11", "deaths = 11")) for region in levels[0].regions)
    assert levels[0].example["deaths"] in (10, 11)
    assert all("deaths = 12" not in r for c in changes for r in c.regions)


def test_unit_added_to_one_level() -> None:
    """A unit added to the city level is named as gained at 500 participants and above (where the
    cross-region rule does not already bring it), nowhere else."""
    old = "      level: city\n"
    changes = _changes(TOWNSHIP, old, "      level: city\n      units: [cross_region_partner]\n")
    assert [c.fields for c in changes] == [(("units", "-[]", "+[cross_region_partner]"),)]
    assert all(r.startswith(("participants = 500", "participants > 500")) for r in changes[0].regions)
    assert all(r.endswith("needs_cross_region false") for r in changes[0].regions)
    assert changes[0].example["participants"] >= 500


def test_rule_removed() -> None:
    """Removing the call-finance rule loses the finance unit wherever funding is needed."""
    text = FIRE.read_text(encoding="utf-8")
    start = text.index("  - id: call-finance")
    end = text.index("  - id: call-public-security")
    changes = diff(load_document(FIRE), parse_document((text[:start] + text[end:]).encode(), "new.yaml"))
    assert [c.fields for c in changes] == [(("units", "-[finance]", "+[]"),)]
    assert changes[0].regions == ("funding_needed true",)
    assert changes[0].example["funding_needed"] is True


def test_boundary_convention_changed() -> None:
    """Reading 以下 as exclusive (accident-grading) leaves exactly 100 participants without a level."""
    changes = _changes(TOWNSHIP, "boundary: civil-code", "boundary: accident-grading")
    assert changes
    assert all("participants = 100" in r for c in changes for r in c.regions)
    assert any(("level", "township", "-") in c.fields for c in changes)


def test_documents_with_other_inputs_are_not_compared() -> None:
    """Two documents with different inputs are refused, naming the inputs that differ."""
    with pytest.raises(NotComparable, match="only in"):
        diff(load_document(FIRE), load_document(TOWNSHIP))


def test_diff_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI takes paths or RULESET@VERSION, exits 1 on a change, 0 on none, 2 on a bad argument."""
    assert main(["rules", "diff", "fire-linkage@2024.1", str(FIRE), "--rules-dir", str(BUNDLED)]) == EXIT_OK
    assert "0 change(s)" in capsys.readouterr().out
    changed = tmp_path / "new.yaml"
    changed.write_text(
        replace_once(TOWNSHIP.read_text(encoding="utf-8"), "boundary: civil-code", "boundary: accident-grading"),
        encoding="utf-8",
    )
    assert main(["rules", "diff", str(TOWNSHIP), str(changed), "--json"]) == EXIT_FAILED
    out = json.loads(capsys.readouterr().out)
    assert out and out[0]["example"]["participants"] == 100
    assert main(["rules", "diff", "fire-linkage@9.9", str(FIRE), "--rules-dir", str(BUNDLED)]) == EXIT_USAGE
    assert "looked in rules directory" in capsys.readouterr().err
    assert main(["rules", "diff", str(FIRE), str(TOWNSHIP)]) == EXIT_USAGE
