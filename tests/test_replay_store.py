"""Shadow replay over the incident store (issue 16): a SQLite store filled through IncidentService
in-process, replayed by `liandong replay --against VERSION --data-dir/--store`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liandong import shadow
from liandong.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from liandong.store.recorded import StoreIncidents
from liandong.store.sql import SQLITE_FILE, SqlStore
from liandong.v1 import incidents_pb2 as ipb
from support.incidents import ManualClock, facts, incident_service, stub
from support.rules import copy_bundled, replace_once
from support.servers import channel, target

CROWD = "mass_incident"


def _candidate(tmp_path: Path) -> Path:
    """Township 2024.1 and a 2025.1, in force from 2026 (before the incidents), that reads 以下 as exclusive."""
    root = tmp_path / "rules"
    folder = copy_bundled(root, "township-mass-incident")
    text = (folder / "2024.1.yaml").read_text(encoding="utf-8")
    text = replace_once(text, 'version: "2024.1"', 'version: "2025.1"')
    text = replace_once(text, "boundary: civil-code", "boundary: accident-grading")
    text = replace_once(text, "effective_from: 2024-01-01", "effective_from: 2026-01-01")
    (folder / "2025.1.yaml").write_text(text, encoding="utf-8")
    return root


def _fill(runtime: DurableRuntime, data_dir: Path) -> None:
    """Township incidents at 99, 100 (reached by a second report) and 600 participants, one closed, and a medical dispute."""
    with incident_service(runtime, ManualClock(), data_dir=str(data_dir)) as svc, channel(target(svc)) as ch:
        st = stub(ch)
        for incident_id, participants in (("m-099", 99), ("m-100", 80), ("m-600", 600)):
            st.Report(
                ipb.ReportRequest(
                    incident_id=incident_id,
                    type=CROWD,
                    facts=facts(participants=participants, local_forces_can_control=False),
                )
            )
        st.Report(ipb.ReportRequest(incident_id="m-100", facts=facts(participants=100)))
        st.Close(ipb.CloseRequest(incident_id="m-600", by="镇党委、政府", reason="响应终止"))
        st.Report(ipb.ReportRequest(incident_id="md-1", type="medical_dispute", facts=facts(complex=True)))


def test_store_source_gives_merged_facts_and_the_judged_version(runtime: DurableRuntime, tmp_path: Path) -> None:
    """Each recorded incident comes back with its merged facts, its rule set and the version it was judged under, closed ones too."""
    _fill(runtime, tmp_path / "data")
    store = SqlStore.for_data_dir(tmp_path / "data")
    try:
        recorded = {r.incident.id: r for r in StoreIncidents(store)()}
    finally:
        store.close()
    assert sorted(recorded) == ["m-099", "m-100", "m-600", "md-1"]
    assert recorded["m-100"].incident.facts == {"participants": 100, "local_forces_can_control": False}
    assert (recorded["m-100"].ruleset, recorded["m-100"].version) == ("township-mass-incident", "2024.1")
    assert (recorded["md-1"].ruleset, recorded["md-1"].incident.type) == ("medical-dispute", "medical_dispute")


def test_replay_compares_with_the_judged_version_not_the_one_in_force(runtime: DurableRuntime, tmp_path: Path) -> None:
    """Against 2025.1 (in force when the incidents opened, but they were judged under 2024.1) only m-100 changes, by township-linkage; the dispute, whose rule set the candidate lacks, is skipped."""
    _fill(runtime, tmp_path / "data")
    book = RuleBook.load(_candidate(tmp_path), DurableRuntime())
    store = SqlStore.for_data_dir(tmp_path / "data")
    try:
        result = shadow.replay(book, StoreIncidents(store)(), "2025.1")
    finally:
        store.close()
    assert result.compared == 3
    [d] = result.differences
    assert (d.incident, d.old_version, d.new_version) == ("m-100", "2024.1", "2025.1")
    assert d.old.startswith("level township;") and d.new.startswith("level -;")
    assert d.rules == ("-township-linkage",)
    assert [s.split(":")[0] for s in result.skipped] == ["md-1"]


def test_replay_cli_reads_the_store(
    runtime: DurableRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`liandong replay --data-dir` and `--store sqlite:///…` replay the store: one change against 2025.1 (exit 1), none against 2024.1 (exit 0)."""
    data = tmp_path / "data"
    _fill(runtime, data)
    rules = str(_candidate(tmp_path))
    assert main(["replay", "--against", "2025.1", "--data-dir", str(data), "--rules-dir", rules]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "m-100" in out and "1 of 3 answers would change" in out
    url = f"sqlite:///{(data / SQLITE_FILE).resolve()}"
    assert main(["replay", "--against", "2024.1", "--store", url, "--rules-dir", rules, "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["changed"] == 0


def test_replay_cli_refuses_no_source_two_sources_and_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replay with neither a file nor a store, with both, or with a data directory holding no store is a usage error, and creates nothing."""
    rules = str(_candidate(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "i.jsonl").write_text("", encoding="utf-8")
    assert main(["replay", "--against", "2025.1", "--rules-dir", rules]) == EXIT_USAGE
    assert "one of them" in capsys.readouterr().err
    args = ["replay", str(tmp_path / "i.jsonl"), "--against", "2025.1", "--data-dir", str(empty), "--rules-dir", rules]
    assert main(args) == EXIT_USAGE
    assert "one of them" in capsys.readouterr().err
    assert main(["replay", "--against", "2025.1", "--data-dir", str(empty), "--rules-dir", rules]) == EXIT_USAGE
    assert "no incident store there" in capsys.readouterr().err
    assert list(empty.iterdir()) == []
