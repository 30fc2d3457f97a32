"""Static analysis (`liandong rules check`): gaps, overlaps, masked and never-firing rules, unused
catalogue entries, found in mutated copies of the bundled documents and accepted only by reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from liandong.cli import EXIT_FAILED, EXIT_OK, main
from liandong.document.analysis import Finding, analyse, unaccepted
from liandong.document.load import load_document, load_tree, parse_document
from liandong.document.regions import components, regions
from support.data import BUNDLED
from support.rules import copy_bundled, edit
from test_unconditional import NO_LEVELS

FIRE = "fire-linkage/2024.1.yaml"
TOWNSHIP = "township-mass-incident/2024.1.yaml"


def _findings(path: Path) -> list[Finding]:
    return unaccepted(analyse(load_document(path)))


def _mutated(tmp_path: Path, name: str, old: str, new: str) -> Path:
    copy_bundled(tmp_path, name)
    path = tmp_path / name / "2024.1.yaml"
    edit(path, old, new)
    return path


@pytest.mark.parametrize(
    "name", sorted({p.parent.name for p in BUNDLED.glob("*/*.yaml") if not p.name.endswith(".fixtures.yaml")})
)
def test_bundled_documents_have_no_unaccepted_finding(name: str) -> None:
    """Every bundled rule set ends with no unaccepted finding."""
    docs = load_tree(BUNDLED / name)
    assert [str(f) for doc in docs for f in unaccepted(analyse(doc))] == []


def test_gap_at_10_deaths(tmp_path: Path) -> None:
    """A grade-II written 超过10 (10 < x) leaves exactly 10 deaths with no level: a gap named at 10."""
    path = _mutated(tmp_path, "fire-linkage", "- deaths: {以上: 10, 以下: 30}", "- deaths: {超过: 10, 以下: 30}")
    found = _findings(path)
    assert [f.id for f in found] == ["gap:deaths"]
    assert "deaths = 10 " in found[0].message
    assert "deaths = 9" not in found[0].message and "deaths = 11" not in found[0].message


def test_overlap_at_100_participants(tmp_path: Path) -> None:
    """A county command written 以上100 claims the 100 that 100人以下 (civil code) gives the township."""
    path = _mutated(
        tmp_path,
        "township-mass-incident",
        "participants: {超过: 100, 不满: 500}",
        "participants: {以上: 100, 不满: 500}",
    )
    found = _findings(path)
    assert [f.id for f in found] == ["overlap:township-linkage/county-command:participants"]
    assert found[0].message.startswith("participants = 100 ")
    assert "'township-linkage' (level township) and 'county-command' (level county) both hold" in found[0].message
    assert found[0].pos.line > 0


def test_masked_rule(tmp_path: Path) -> None:
    """A grade-III whose criteria are those of grade-I is always outranked: masked (and its own band is a gap)."""
    path = _mutated(
        tmp_path,
        "fire-linkage",
        """        - deaths: {以上: 3, 以下: 10}
        - serious_injuries: {以上: 10, 以下: 50}
        - direct_loss_yuan: {以上: 10000000, 以下: 50000000}""",
        """        - deaths: {以上: 30}
        - serious_injuries: {以上: 100}
        - direct_loss_yuan: {以上: 100000000}""",
    )
    ids = [f.id for f in _findings(path)]
    assert "masked:grade-III" in ids
    assert "unused-level:III" not in ids  # still set by a rule, just never decided


def test_rule_that_can_never_fire(tmp_path: Path) -> None:
    """A condition no incident can meet (以上30 and 不满10 deaths) is reported as never firing."""
    path = _mutated(tmp_path, "fire-linkage", "- deaths: {以上: 30}", "- deaths: {以上: 30, 不满: 10}")
    ids = [f.id for f in _findings(path)]
    assert "masked:grade-I" not in ids
    loaded = load_document(path)
    assert any(f.id == "gap:deaths" for f in analyse(loaded))
    # grade-I still fires on injuries and loss: only a rule with no way at all is "never fires"
    assert "never-fires:grade-I" not in ids


def test_never_fires_on_its_own(tmp_path: Path) -> None:
    """A rule whose only condition is contradictory can never fire."""
    path = _mutated(
        tmp_path,
        "township-mass-incident",
        "    when:\n      participants: {以上: 500}",
        "    when:\n      participants: {以上: 500, 不满: 100}",
    )
    assert "never-fires:city-command" in [f.id for f in _findings(path)]


def test_unused_unit(tmp_path: Path) -> None:
    """A unit in the catalogue that no rule, level, group or obligation names is reported, at its line."""
    path = _mutated(
        tmp_path,
        "fire-linkage",
        "units:\n",
        "units:\n  - {id: spare_unit, name: 备用单位, duties: 待命, citation: 第十条}\n",
    )
    found = _findings(path)
    assert [f.id for f in found] == ["unused-unit:spare_unit"]
    text = path.read_text(encoding="utf-8").splitlines()
    assert "spare_unit" in text[found[0].pos.line - 1]


def test_accepted_finding_is_shown_as_accepted_and_stale_accept_is_a_finding(tmp_path: Path) -> None:
    """An `accept` entry turns a finding into an accepted one with its reason; one that matches nothing is reported."""
    path = _mutated(
        tmp_path,
        "fire-linkage",
        "units:\n",
        "units:\n  - {id: spare_unit, name: 备用单位, duties: 待命, citation: 第十条}\n",
    )
    with path.open("a", encoding="utf-8") as out:
        out.write(
            "accept:\n"
            "  - {finding: 'unused-unit:spare_unit', reason: 预案列出但本机制不调用}\n"
            "  - {finding: 'gap:nothing', reason: 旧的}\n"
        )
    found = analyse(load_document(path))
    accepted = [f for f in found if f.accepted]
    assert [(f.id, f.accepted) for f in accepted] == [("unused-unit:spare_unit", "预案列出但本机制不调用")]
    assert [f.id for f in unaccepted(found)] == ["stale-accept:gap:nothing"]


def test_rules_check_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rules check` exits 0 on the bundled rules and 1 with the located finding on a mutated copy."""
    assert main(["rules", "check", str(BUNDLED)]) == EXIT_OK
    assert "accepted overlap:level-II-guaranteed-level/level-IV-above-warning" in capsys.readouterr().out
    path = _mutated(tmp_path, "fire-linkage", "- deaths: {以上: 10, 以下: 30}", "- deaths: {超过: 10, 以下: 30}")
    assert main(["rules", "check", str(tmp_path)]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert f"{path}:" in out and "gap:deaths" in out
    assert main(["rules", "check", "--json", str(tmp_path)]) == EXIT_FAILED
    assert '"kind": "gap"' in capsys.readouterr().out


def test_validate_fails_on_an_unaccepted_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rules validate` runs the analysis too: an unaccepted finding is a located problem and exit 1."""
    _mutated(tmp_path, "fire-linkage", "- deaths: {以上: 10, 以下: 30}", "- deaths: {超过: 10, 以下: 30}")
    assert main(["rules", "validate", str(tmp_path)]) == EXIT_FAILED
    assert "gap:deaths" in capsys.readouterr().err


def test_a_plan_without_levels_and_an_unconditional_rule() -> None:
    """A plan with no levels and an `all: []` rule has no gap, overlap or masked finding."""
    doc = parse_document(NO_LEVELS.encode(), "duties.yaml")
    assert [f.id for f in analyse(doc)] == []


def test_masked_unconditional_rule() -> None:
    """An unconditional rule that adds nothing another unconditional rule does not is masked."""
    text = NO_LEVELS.replace(
        "  - id: complex-case",
        "  - id: always-again\n    title: 重复\n    citation: 一\n    when: {all: []}\n    then: {units: [office]}\n"
        "  - id: complex-case",
    )
    doc = parse_document(text.encode(), "duties.yaml")
    assert [f.id for f in analyse(doc)] == ["masked:always-again"]


ENUMS = """\
ruleset: enums
version: "1"
title: 枚举预案
source: {plan: 枚举预案, location: sources/plan.md}
effective_from: 2024-01-01
incident_types: [e]
boundary: civil-code
inputs:
  kind: {type: enum, values: {a: 甲, b: 乙, c: 丙}, default: a, meaning: 类别}
  level_m: {type: number, optional: true, meaning: 水位}
  limit_m: {type: number, default: 10.5, meaning: 警戒}
levels:
  - {code: I, name: 一级, rank: 2}
  - {code: II, name: 二级, rank: 1}
units:
  - {id: office, name: 办公室, duties: 值守, citation: 一}
rules:
  - {id: r-a, title: 甲, citation: 一, when: {kind: a}, then: {level: II, lead: office}}
  - {id: r-b, title: 乙, citation: 一, when: {kind: {in: [b, c]}}, then: {level: I}}
  - {id: r-high, title: 高, citation: 一, when: {level_m: {gte: {input: limit_m}}}, then: {level: I}}
"""


def test_enum_optional_and_input_operands_are_cut_into_regions() -> None:
    """Enum values, absence of an optional input and the other input's default are regions of their own."""
    doc = parse_document(ENUMS.encode(), "enums.yaml")
    assert [r.text for r in regions(doc, doc.inputs[0])] == ["a", "b", "c"]
    level = [r.text for r in regions(doc, doc.inputs[1])]
    assert level[0] == "absent" and "= 10.5" in level
    assert sorted(c.inputs for c in components(doc)) == [("kind",), ("level_m", "limit_m")]
    assert [f.id for f in analyse(doc)] == []
