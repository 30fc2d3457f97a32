"""End to end: the command-line client (`liandong determine`, `liandong rulesets`) against a running server."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from liandong.cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, main
from liandong.server.app import Service
from support.rules import canonical_hash
from support.servers import LOOPBACK, target

RULE_SETS = ("fire-linkage", "demo")  # the module's rules directory (conftest.py `rules_dir`)


def test_determine_prints_a_readable_determination(server: Service, capsys: pytest.CaptureFixture[str]) -> None:
    """`liandong determine` prints the decision id, level, lead, units, groups, obligations and cited clauses, and exits 0."""
    code = main(
        [
            "determine",
            "--type",
            "fire",
            "--fact",
            "deaths=3",
            "--fact",
            "serious_injuries=12",
            "--id",
            "110-1",
            "--target",
            target(server),
        ]
    )
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert out.startswith("decision   ")
    assert "rule set   fire-linkage 2024.1" in out
    assert "level      III 较大火灾 (rank 2)" in out
    assert "lead       县灭火与消防应急救援指挥部 [county_hq]" in out
    assert "县卫健局 [health] (第四条(三)10)" in out  # 12 serious injuries call the health bureau
    assert "通信保障组 [communications] (第十三条): lead 县应急管理局" in out
    assert "接到命令后,应立即向本单位主要负责同志报告" in out
    assert "grade-III: 较大火灾" in out and "— 公安部2007火灾等级标准 较大火灾" in out
    assert "call-health:" in out


def test_determine_explain_shows_conditions_with_values(server: Service, capsys: pytest.CaptureFixture[str]) -> None:
    """`--explain` adds each rule's conditions with the values they were evaluated on."""
    assert (
        main(["determine", "--type", "demo", "--fact", "deaths=3", "--explain", "--target", target(server)]) == EXIT_OK
    )
    out = capsys.readouterr().out
    assert "deaths 以上 3 (≥ 3)" in out and "deaths = 3" in out


def test_determine_json(server: Service, rules_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints the Determination message as JSON, with the decision id and content hash."""
    assert main(["determine", "--type", "fire", "--fact", "deaths=10", "--json", "--target", target(server)]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["level"]["code"] == "II" and data["ruleset"] == "fire-linkage" and data["decisionId"]
    assert data["contentHash"] == canonical_hash(rules_dir / "fire-linkage" / "2024.1.yaml")
    assert [r["id"] for r in data["matchedRules"]][:1] == ["grade-II"]


def test_determine_invalid_facts_exit_3_listing_violations(server: Service, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid facts exit 3 and list every violation on stderr."""
    code = main(
        [
            "determine",
            "--type",
            "fire",
            "--fact",
            "deaths=-1",
            "--fact",
            "bogus=2",
            "--fact",
            "hazardous_materials=maybe",
            "--target",
            target(server),
        ]
    )
    captured = capsys.readouterr()
    assert code == EXIT_REFUSED and captured.out == ""
    assert "deaths: -1 is below the minimum 0" in captured.err
    assert "bogus: is not an input of rule set 'fire-linkage'" in captured.err
    assert "hazardous_materials: must be true or false" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["--type", "fyre"],
            "no rule set answers for incident type 'fyre' (known types: demo, fire) (did you mean 'fire'?)",
        ),
        (
            ["--type", "fire", "--ruleset", "fire-linkag"],
            "no rule set 'fire-linkag' is loaded (did you mean 'fire-linkage'?)",
        ),
        (["--type", "fire", "--version", "2030.1"], "rule set 'fire-linkage' has no version '2030.1' (loaded: 2024.1)"),
    ],
    ids=["unknown type", "unknown rule set", "unknown version"],
)
def test_determine_refusals_exit_3_with_the_server_message(
    server: Service, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    """An unknown incident type, rule set or version exits 3 with the server's explanation on stderr."""
    assert main(["determine", *argv, "--target", target(server)]) == EXIT_REFUSED
    assert words in capsys.readouterr().err


def test_rulesets_lists_versions_with_active_mark(
    server: Service, rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`liandong rulesets` lists each rule set with its types, active version, and every version with date, hash prefix and title."""
    assert main(["rulesets", "--target", target(server)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    fire_hash = canonical_hash(rules_dir / "fire-linkage" / "2024.1.yaml")[:12]
    demo_hash = canonical_hash(rules_dir / "demo" / "2024.1.yaml")[:12]
    assert lines == [
        "demo  types: demo  active: 2024.1",
        f"  * 2024.1  from 2024-01-01  sha256 {demo_hash}  测试预案",
        "fire-linkage  types: fire  active: 2024.1",
        f"  * 2024.1  from 2024-01-01  sha256 {fire_hash}  XX县灭火与消防应急救援社会联动工作机制",
    ]


def test_client_commands_without_a_server_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """With nothing listening at the target, both commands exit 1 saying the service is unavailable."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        closed = f"{LOOPBACK}:{probe.getsockname()[1]}"
    # The port is free again (nothing listens on it); the client retries UNAVAILABLE a bounded number of times.
    assert main(["determine", "--type", "fire", "--target", closed, "--timeout", "2"]) == EXIT_FAILED
    assert main(["rulesets", "--target", closed, "--timeout", "2"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("error: UNAVAILABLE") == 2
