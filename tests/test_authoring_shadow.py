"""Shadow replay: recorded incidents answered again under a candidate version; the table of the
answers that would change, with the rules that made the difference."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from liandong import shadow
from liandong.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from liandong.server.metrics import RULE_FINDINGS, SHADOW_CHANGED, SHADOW_COMPARED, Metrics
from liandong.server.reload import RulesState
from support.rules import copy_bundled, edit, replace_once

INCIDENTS = [
    {"id": "m-99", "type": "mass_incident", "facts": {"participants": 99, "local_forces_can_control": False}},
    {"id": "m-100", "type": "mass_incident", "facts": {"participants": 100, "local_forces_can_control": False}},
    {"id": "m-600", "type": "mass_incident", "facts": {"participants": 600}},
    {"id": "fire-1", "type": "fire", "facts": {"deaths": 1}},
]


def _two_versions(tmp_path: Path) -> Path:
    """A rules directory with township 2024.1 and a 2025.1 that reads 以下 as exclusive."""
    root = tmp_path / "rules"
    folder = copy_bundled(root, "township-mass-incident")
    text = (folder / "2024.1.yaml").read_text(encoding="utf-8")
    text = replace_once(text, 'version: "2024.1"', 'version: "2025.1"')
    text = replace_once(text, "boundary: civil-code", "boundary: accident-grading")
    text = text.replace("effective_from: 2024-01-01", "effective_from: 2099-01-01")
    (folder / "2025.1.yaml").write_text(text, encoding="utf-8")
    return root


def _jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in INCIDENTS), encoding="utf-8")
    return path


def test_replay_names_each_changed_answer_and_the_rule(tmp_path: Path) -> None:
    """Only the incident at exactly 100 participants changes, from the township level to none, by township-linkage."""
    root = _two_versions(tmp_path)
    book = RuleBook.load(root, DurableRuntime())
    incidents = list(shadow.read_jsonl(io.StringIO(_jsonl(tmp_path / "i.jsonl").read_text(encoding="utf-8"))))
    result = shadow.replay(book, incidents, "2025.1")
    assert result.compared == 3
    assert [d.incident for d in result.differences] == ["m-100"]
    [d] = result.differences
    assert (d.old_version, d.new_version) == ("2024.1", "2025.1")
    assert d.old.startswith("level township;") and d.new.startswith("level -;")
    assert d.rules == ("-township-linkage",)
    assert result.skipped == ("fire-1: no rule set answers incident type 'fire'",)


def test_replay_cli_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`liandong replay --against` prints the table and exits 1 when an answer would change, 0 when none would."""
    root = _two_versions(tmp_path)
    incidents = _jsonl(tmp_path / "i.jsonl")
    assert main(["replay", str(incidents), "--against", "2025.1", "--rules-dir", str(root)]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "m-100  township-mass-incident 2024.1 -> 2025.1  rules: -township-linkage" in out
    assert "1 of 3 answers would change" in out
    assert main(["replay", str(incidents), "--against", "2024.1", "--rules-dir", str(root), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["changed"] == 0


def test_replay_refuses_a_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line that is not an incident is a usage error naming the line, before anything is compared."""
    root = _two_versions(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "mass_incident", "facts": {}}\n{"facts": 3}\n', encoding="utf-8")
    assert main(["replay", str(bad), "--against", "2025.1", "--rules-dir", str(root)]) == EXIT_USAGE
    assert "line 2: not an incident" in capsys.readouterr().err


def test_refusals_count_as_answers(tmp_path: Path) -> None:
    """An incident refused under both versions is unchanged; the refusal is shown as the answer."""
    root = _two_versions(tmp_path)
    book = RuleBook.load(root, DurableRuntime())
    refused = shadow.read_jsonl(io.StringIO('{"id": "x", "type": "mass_incident", "facts": {"participants": -1}}\n'))
    result = shadow.replay(book, refused, "2025.1")
    assert (result.compared, result.changed) == (1, 0)


def test_shadow_on_reload_counts_in_log_and_metrics(tmp_path: Path) -> None:
    """With --shadow, a reload that brings a new version replays the recorded incidents and
    counts the answers that would change, in the log and the metrics; the reload still succeeds."""
    root = tmp_path / "rules"
    copy_bundled(root, "township-mass-incident")
    registry = CollectorRegistry()
    state = RulesState(
        root, DurableRuntime(), Metrics(registry), run_fixtures=False, shadow=_jsonl(tmp_path / "i.jsonl")
    )
    assert state.reload("start").ok
    assert registry.get_sample_value(SHADOW_CHANGED, {"ruleset": "township-mass-incident"}) is None
    newer = _two_versions(tmp_path / "next") / "township-mass-incident" / "2025.1.yaml"
    shutil.copy(newer, root / "township-mass-incident" / "2025.1.yaml")
    with capture_logs() as logs:
        assert state.reload("signal").ok
    assert registry.get_sample_value(SHADOW_COMPARED, {"ruleset": "township-mass-incident"}) == 3
    assert registry.get_sample_value(SHADOW_CHANGED, {"ruleset": "township-mass-incident"}) == 1
    [line] = [e for e in logs if e["event"] == "rules_shadow_replay"]
    assert (line["version"], line["compared"], line["changed"]) == ("2025.1", 3, 1)
    assert line["differences"][0]["incident"] == "m-100"
    assert registry.get_sample_value(RULE_FINDINGS, {"ruleset": "township-mass-incident", "version": "2025.1"}) == 1


def test_findings_at_load_are_logged_located(tmp_path: Path) -> None:
    """A loaded version with an unaccepted finding is logged with the located finding and counted."""
    root = tmp_path / "rules"
    folder = copy_bundled(root, "township-mass-incident")
    edit(folder / "2024.1.yaml", "participants: {超过: 100, 不满: 500}", "participants: {以上: 100, 不满: 500}")
    registry = CollectorRegistry()
    state = RulesState(root, DurableRuntime(), Metrics(registry), run_fixtures=False)
    with capture_logs() as logs:
        assert state.reload("start").ok
    [line] = [e for e in logs if e["event"] == "rules_findings"]
    assert line["count"] == 1 and "2024.1.yaml:" in line["findings"][0]
    assert "overlap:township-linkage/county-command:participants" in line["findings"][0]
    assert registry.get_sample_value(RULE_FINDINGS, {"ruleset": "township-mass-incident", "version": "2024.1"}) == 1
