"""What the new rule author ran into, each fixed: fixtures checked against their document, every
problem in one pass, one bad case no longer stops its file, one behaviour for missing fixtures and
paths, `--rules-dir` everywhere, errors naming ids, and the habits of `opa test`."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from liandong.cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, main, watch
from support.data import DATA
from support.rules import edit

RULES = DATA / "rules"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the demo rules directory to edit."""
    root = tmp_path / "rules"
    shutil.copytree(RULES, root)
    return root


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_validate_checks_fixtures_against_their_document(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt obligation id and a level code the document lacks are located errors of `validate`."""
    fixtures = demo / "demo" / "2024.1.fixtures.yaml"
    edit(fixtures, "want: {level: II}", "want: {level: V, obligations_include: [reprot]}")
    assert main(["rules", "validate", str(demo)]) == EXIT_FAILED
    err = capsys.readouterr().err
    line = _line_of(fixtures, "reprot")
    assert f"{fixtures}:{line}:" in err
    assert "case 'exactly 10 deaths is II' want level names unknown level code 'V'" in err
    assert "want obligations_include names unknown obligation 'reprot' (did you mean 'report'?)" in err


def test_fixture_naming_an_unknown_id_fails_even_when_excluded(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`units_exclude: [polise]` would pass trivially; the case fails with the located problem instead."""
    fixtures = demo / "demo" / "2024.1.fixtures.yaml"
    edit(fixtures, "units_exclude: [chem]", "units_exclude: [chemm]")
    assert main(["rules", "test", str(demo)]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "FAIL" in out and "names unknown unit 'chemm' (did you mean 'chem'?)" in out


def test_every_problem_in_one_pass(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A header problem, a bad reference, and a second document's fixture typo all come out in one run."""
    shutil.copytree(demo / "demo", demo / "other")
    for path in (demo / "other").glob("*.yaml"):
        path.write_text(path.read_text(encoding="utf-8").replace("ruleset: demo", "ruleset: other"), encoding="utf-8")
    document = demo / "demo" / "2024.1.yaml"
    edit(document, "\ntitle:", "\ntitel:")
    edit(document, "units: [chem]", "units: [chemm]")
    edit(demo / "other" / "2024.1.fixtures.yaml", "want: {level: II}", "want: {level: V}")
    assert main(["rules", "validate", str(demo)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "document has unknown key 'titel' (did you mean 'title'?)" in err
    assert "names unknown unit 'chemm'" in err
    assert "unknown level code 'V'" in err


def test_one_malformed_case_does_not_stop_the_file(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A case with a misspelt want key is a located problem; every other case still runs."""
    fixtures = demo / "demo" / "2024.1.fixtures.yaml"
    edit(fixtures, "want: {level: II}", "want: {levle: II}")
    assert main(["rules", "test", str(demo)]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert f"{fixtures}:{_line_of(fixtures, 'levle')}:" in err
    total = fixtures.read_text(encoding="utf-8").count("- note:")
    assert out.strip().endswith(f"{total - 1} passed, 1 failed")


@pytest.mark.parametrize("single", [False, True], ids=["directory", "one document"])
def test_missing_fixtures_is_one_clear_failure(demo: Path, capsys: pytest.CaptureFixture[str], single: bool) -> None:
    """A document without fixtures fails `rules test` the same way for a directory and for one document, saying why."""
    (demo / "demo" / "2024.1.fixtures.yaml").unlink()
    target = demo / "demo" / "2024.1.yaml" if single else demo
    assert main(["rules", "test", str(target)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "2024.1.yaml:0:0: has no fixtures (expected 2024.1.fixtures.yaml beside it)" in err


@pytest.mark.parametrize("command", ["validate", "test", "check"])
def test_missing_path_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """A path that does not exist exits 2 with a plain message, as the README says."""
    assert main(["rules", command, str(tmp_path / "nope")]) == EXIT_USAGE
    assert "nope: no such file or directory" in capsys.readouterr().err


def test_rules_dir_on_every_rules_command(capsys: pytest.CaptureFixture[str]) -> None:
    """validate, test and check take --rules-dir as explain and inputs do."""
    for command in ("validate", "test", "check"):
        assert main(["rules", command, "--rules-dir", str(RULES)]) == EXIT_OK, command
    capsys.readouterr()
    assert main(["rules", "inputs", "--rules-dir", str(RULES)]) == EXIT_OK


def test_unknown_rule_set_says_where_the_tool_looked(capsys: pytest.CaptureFixture[str]) -> None:
    """`no rule set ... is loaded` names the rules directory it looked in."""
    assert main(["rules", "explain", "medical-dispute", "--rules-dir", str(RULES)]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "no rule set 'medical-dispute' is loaded" in err and f"looked in --rules-dir {RULES}" in err


def test_errors_name_the_entry_id_as_well_as_its_position(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A problem in a list entry names its position and its id: obligations[1] 'report'.within."""
    edit(demo / "demo" / "2024.1.yaml", "within: at_once", "within: soon")
    assert main(["rules", "validate", str(demo)]) == EXIT_FAILED
    assert "obligations[1] 'report'.within 'soon' is not a duration" in capsys.readouterr().err


def test_run_filter_json_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-k selects cases by note; --json and --junit report the same cases for CI."""
    junit = tmp_path / "out.xml"
    assert main(["rules", "test", str(RULES), "-k", "deaths is I", "--json", "--junit", str(junit)]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    notes = [c["note"] for c in out["cases"]]
    assert notes and all("deaths is I" in n for n in notes)
    suite = ET.parse(junit).getroot()
    assert [c.get("name") for c in suite.iter("testcase")] == notes
    assert main(["rules", "test", str(RULES), "--run", "no such case"]) == EXIT_FAILED
    assert "no case matches" in capsys.readouterr().err


def test_junit_reports_failures(demo: Path, tmp_path: Path) -> None:
    """A failing case is a <failure> in the JUnit file."""
    edit(demo / "demo" / "2024.1.fixtures.yaml", "want: {level: II}", "want: {level: III}")
    junit = tmp_path / "out.xml"
    assert main(["rules", "test", str(demo), "--junit", str(junit)]) == EXIT_FAILED
    failures = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert failures == ["exactly 10 deaths is II"]


def test_watch_runs_again_when_a_file_changes(demo: Path) -> None:
    """--watch runs once, then again after a document or fixture changes (not while nothing does)."""
    runs: list[int] = []
    fixtures = demo / "demo" / "2024.1.fixtures.yaml"

    def once() -> int:
        runs.append(len(runs))
        return EXIT_OK

    polls = 0

    def sleep(_: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 2:  # a change between the second and third look
            fixtures.write_text(fixtures.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")

    assert watch(demo, once, sleep=sleep, runs=2) == EXIT_OK
    assert runs == [0, 1] and polls == 2
