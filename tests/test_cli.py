"""The rule-author CLI: validate, test and explain, with their documented exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from liandong.cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, main
from support.data import DATA

RULES = DATA / "rules"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    """Valid documents print one ok line each and exit 0."""
    assert main(["rules", "validate", str(RULES)]) == EXIT_OK
    assert "demo 2024.1  7 rules" in capsys.readouterr().out


def test_validate_reports_located_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid documents print every problem to stderr as path:line:column and exit 1."""
    target = tmp_path / "demo" / "2024.1.yaml"
    target.parent.mkdir()
    target.write_text(
        (RULES / "demo" / "2024.1.yaml")
        .read_text(encoding="utf-8")
        .replace("units: [chem]", "units: [chemm]")
        .replace("[combat]", "[combt]"),
        encoding="utf-8",
    )
    assert main(["rules", "validate", str(tmp_path)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "names unknown unit 'chemm' (did you mean 'chem'?)" in err
    assert "names unknown group 'combt' (did you mean 'combat'?)" in err
    assert "2 problem(s) found" in err
    assert f"{target}:" in err


def test_rules_test_passes_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Passing fixtures exit 0 with an 'N passed, 0 failed' summary."""
    assert main(["rules", "test", str(RULES)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.strip().endswith("passed, 0 failed")


def test_rules_test_shows_a_diff_per_failing_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A failing case prints its location, its note and what differs, and the run exits 1."""
    shutil.copytree(RULES, tmp_path / "rules")
    fixtures = tmp_path / "rules" / "demo" / "2024.1.fixtures.yaml"
    fixtures.write_text(
        fixtures.read_text(encoding="utf-8").replace("want: {level: II}", "want: {level: I}"), encoding="utf-8"
    )
    assert main(["rules", "test", str(tmp_path / "rules")]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "FAIL" in out and "exactly 10 deaths is II" in out
    assert "level: want 'I', got 'II'" in out
    assert ", 1 failed" in out


def test_explain_prints_level_and_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    """explain prints the determination with each matched rule's conditions and values."""
    code = main(["rules", "explain", "demo", "--rules-dir", str(RULES), "--fact", "deaths=3", "--fact", "hazmat=true"])
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert "level      III 较大" in out
    assert "✓ deaths 以上 3 (≥ 3)   [deaths = 3]" in out
    assert "应急管理局 [chem]" in out


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    """explain --json prints the determination as JSON."""
    assert main(["rules", "explain", "demo", "--rules-dir", str(RULES), "--fact", "deaths=10", "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["level"]["code"] == "II" and data["ruleset"] == "demo"


def test_explain_refused_incident(capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid facts exit 3 and list every violation on stderr."""
    code = main(["rules", "explain", "demo", "--rules-dir", str(RULES), "--fact", "deaths=-1", "--fact", "death=2"])
    assert code == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "deaths: -1 is below the minimum 0" in err and "death: is not an input" in err


def test_explain_unknown_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown rule set exits 3 with a suggestion."""
    assert main(["rules", "explain", "dem", "--rules-dir", str(RULES)]) == EXIT_REFUSED
    assert "did you mean 'demo'?" in capsys.readouterr().err


def test_bad_fact_syntax_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A --fact without '=' exits 2."""
    assert main(["rules", "explain", "demo", "--rules-dir", str(RULES), "--fact", "deaths"]) == EXIT_USAGE
    assert "is not NAME=VALUE" in capsys.readouterr().err
