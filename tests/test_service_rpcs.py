"""End to end: every ResponseService RPC against a real server on a free loopback port."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from liandong.client import Client, InvalidIncident, RuleSetNotFound
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import answers_of, batches, request
from support.rules import canonical_hash
from support.servers import target
from support.status import details

FIRE_GROUPS = ["combat", "experts", "communications", "logistics", "publicity"]


RULE_SETS = ("fire-linkage", "demo", "quiet")  # the module's rules directory (conftest.py `rules_dir`)


@pytest.fixture(scope="module")
def client(server: Service) -> Iterator[Client]:
    with Client(target(server), timeout=10) as c:
        yield c


# -- Determine ---------------------------------------------------------------------------------------
def test_determine_fire_three_deaths(client: Client, rules_dir: Path) -> None:
    """3 deaths in a fire is level III under fire-linkage, led by the county HQ with its five groups, every rule cited."""
    det = client.determine("fire", {"deaths": 3}, incident_id="110-2024-0001")
    assert uuid.UUID(det.decision_id)
    assert det.incident_id == "110-2024-0001" and det.incident_type == "fire"
    assert (det.ruleset, det.version) == ("fire-linkage", "2024.1")
    assert det.content_hash == canonical_hash(rules_dir / "fire-linkage" / "2024.1.yaml")
    assert det.applies
    assert (det.level.code, det.level.name, det.level.rank) == ("III", "较大火灾", 2)
    assert det.lead_agency.id == "county_hq" and det.lead_agency.name == "县灭火与消防应急救援指挥部"
    assert det.lead_agency.citation.clause == "第四条(一)"
    assert [g.id for g in det.groups] == FIRE_GROUPS
    assert all(g.name and g.duties and g.citation.clause for g in det.groups)
    assert [m.id for m in det.groups[2].members] == ["telecom", "mobile", "unicom"] and det.groups[
        2
    ].lead.id == "emergency_bureau"
    assert [(c.role, c.who) for c in det.commanders][0] == ("总指挥", "县政府分管副县长")
    assert "county_hq" in [u.id for u in det.participating_units]
    assert {o.id for o in det.obligations} == {"hq_setup", "hq_tasking", "dispatch_on_order", "report_on_order"}
    assert [r.id for r in det.matched_rules] == ["grade-III", "county-hq", "hq-groups"]
    assert (
        det.matched_rules[0].citation.document == "公安部2007火灾等级标准"
        and det.matched_rules[0].citation.clause == "较大火灾"
    )
    assert all(r.citation.clause and r.title for r in det.matched_rules)
    assert det.summary.startswith("III 较大火灾; lead 县灭火与消防应急救援指挥部")
    # Without explain there are no traces.
    assert not any(r.HasField("conditions") for r in det.matched_rules)
    assert len(det.unmatched_rules) == 0 and len(det.evaluated_facts.fields) == 0


def test_determine_explain_returns_conditions_and_evaluated_facts(stub: pb_grpc.ResponseServiceStub) -> None:
    """With explain, each matched rule carries its conditions with actual values, unmatched rules are listed, and facts come back with defaults filled."""
    det = stub.Determine(request("fire", {"deaths": 3.0, "hazardous_materials": True}, explain=True), timeout=10)
    grade = det.matched_rules[0]
    assert grade.id == "grade-III" and grade.conditions.expression == "any" and grade.conditions.holds
    leaves = [leaf for branch in grade.conditions.children for leaf in branch.children]
    assert any(
        leaf.expression == "deaths 以上 3 (≥ 3)" and leaf.actual == "deaths = 3" and leaf.holds for leaf in leaves
    )
    assert any(leaf.expression.startswith("serious_injuries 以上 10") and not leaf.holds for leaf in leaves)
    assert "call-emergency-bureau" in [r.id for r in det.matched_rules]
    unmatched = {r.id for r in det.unmatched_rules}
    assert {"grade-I", "grade-II", "grade-IV", "fire-brigade-leads"} <= unmatched
    assert all(r.HasField("conditions") and not r.conditions.holds for r in det.unmatched_rules)
    facts = det.evaluated_facts.fields
    assert facts["deaths"].number_value == 3 and facts["hazardous_materials"].bool_value is True
    assert facts["serious_injuries"].number_value == 0 and facts["power_involved"].bool_value is False


def test_determine_when_no_rule_applies_is_an_ok_answer(stub: pb_grpc.ResponseServiceStub) -> None:
    """An incident no rule covers gets an OK answer with applies=false, no level and a summary that says so."""
    det = stub.Determine(request("quiet", {"deaths": 0}, incident_id="q1"), timeout=10)
    assert det.applies is False and not det.HasField("level") and len(det.matched_rules) == 0
    assert det.ruleset == "quiet" and det.incident_id == "q1" and det.decision_id
    assert "no rule applies" in det.summary


def test_decision_ids_are_unique(client: Client) -> None:
    """Every answer has its own decision id, even for the same incident."""
    ids = {client.determine("demo", {"deaths": 1}).decision_id for _ in range(20)}
    assert len(ids) == 20


def test_concurrent_determine_calls_all_answer_correctly(client: Client) -> None:
    """Calls from several threads at once each get the answer for their own incident."""
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def call(deaths: int) -> None:
        try:
            results[deaths] = client.determine("demo", {"deaths": deaths}).level.code
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(d,)) for d in range(0, 24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert results == {d: ("IV" if d < 3 else "III" if d < 10 else "II") for d in range(0, 24)}


# -- DetermineStream -----------------------------------------------------------------------------------
def _expected_level(deaths: int) -> str:
    return "IV" if deaths < 3 else "III" if deaths < 10 else "II"


def test_stream_answers_200_incidents_in_request_order(stub: pb_grpc.ResponseServiceStub) -> None:
    """200 incidents through DetermineStream, one per message, come back one answer each, in request order."""
    deaths = [(n * 7) % 23 for n in range(200)]
    reqs = [request("demo", {"deaths": d}, incident_id=f"i{n:03d}") for n, d in enumerate(deaths)]
    answers = list(answers_of(stub.DetermineStream(batches(reqs), timeout=30)))
    assert [a.incident_id for a in answers] == [f"i{n:03d}" for n in range(200)]
    assert [a.level.code for a in answers] == [_expected_level(d) for d in deaths]
    assert len({a.decision_id for a in answers}) == 200


def test_stream_mixes_rule_sets_in_order(client: Client) -> None:
    """A stream may mix incident types; each answer comes from its own rule set, in order."""
    reqs = [
        Client.request("fire", {"deaths": 3}, incident_id="a"),
        Client.request("demo", {"deaths": 10}, incident_id="b"),
        Client.request("quiet", {"deaths": 0}, incident_id="c"),
        Client.request("fire", {"deaths": 0}, incident_id="d"),
    ]
    answers = list(client.determine_many(reqs, timeout=30))
    assert [(a.incident_id, a.ruleset, a.level.code) for a in answers] == [
        ("a", "fire-linkage", "III"),
        ("b", "demo", "II"),
        ("c", "quiet", ""),
        ("d", "fire-linkage", "IV"),
    ]


def test_stream_ends_with_invalid_argument_after_earlier_answers(stub: pb_grpc.ResponseServiceStub) -> None:
    """An invalid request mid-stream ends the stream with INVALID_ARGUMENT after the answers to the requests before it."""
    reqs = [request("demo", {"deaths": n}, incident_id=f"ok{n}") for n in range(5)]
    reqs.append(request("demo", {"deaths": -1, "unknown_fact": 1}, incident_id="bad"))
    reqs.extend(request("demo", {"deaths": n}, incident_id=f"after{n}") for n in range(3))
    received: list[str] = []
    with pytest.raises(grpc.RpcError) as caught:
        for answer in answers_of(stub.DetermineStream(batches(reqs), timeout=30)):
            received.append(answer.incident_id)
    assert received == [f"ok{n}" for n in range(5)]
    got = details(caught.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v[0] for v in got.violations} == {"incident.facts.deaths", "incident.facts.unknown_fact"}
    assert "Traceback" not in got.message


def test_client_stream_raises_invalid_incident_after_earlier_answers(client: Client) -> None:
    """The client's determine_many yields the answers before a refused request, then raises InvalidIncident with its violations."""
    reqs = [
        Client.request("demo", {"deaths": 1}, incident_id="first"),
        Client.request("demo", {"hazmat": "yes"}, incident_id="second"),
    ]
    received: list[str] = []
    with pytest.raises(InvalidIncident) as caught:
        for answer in client.determine_many(reqs, timeout=30):
            received.append(answer.incident_id)
    assert received == ["first"]
    assert [(v.field, v.reason) for v in caught.value.violations] == [("hazmat", "wrong_type")]


def test_empty_stream_is_ok(stub: pb_grpc.ResponseServiceStub) -> None:
    """A stream with no messages ends OK with no answers."""
    call = stub.DetermineStream(iter(()), timeout=10)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


# -- ListRuleSets / GetRuleSet -------------------------------------------------------------------------
def test_list_rulesets(client: Client, rules_dir: Path) -> None:
    """ListRuleSets names every loaded rule set with its incident types, active version and every version's metadata."""
    by_id = {s.id: s for s in client.list_rulesets()}
    assert sorted(by_id) == ["demo", "fire-linkage", "quiet"]
    fire = by_id["fire-linkage"]
    assert list(fire.incident_types) == ["fire"] and fire.active_version == "2024.1"
    (v,) = fire.versions
    assert (v.version, v.effective_from, v.effective_until, v.active) == ("2024.1", "2024-01-01", "", True)
    assert v.content_hash == canonical_hash(rules_dir / "fire-linkage" / "2024.1.yaml")
    assert v.title == "XX县灭火与消防应急救援社会联动工作机制" and v.source_plan == v.title
    assert v.boundary == "accident-grading" and v.source_location == "sources/plan.md"
    assert by_id["quiet"].versions[0].boundary == "civil-code"
    assert by_id["demo"].versions[0].content_hash == canonical_hash(rules_dir / "demo" / "2024.1.yaml")


def test_get_ruleset_describes_inputs_for_a_form(stub: pb_grpc.ResponseServiceStub) -> None:
    """GetRuleSet lists every input with type, unit, meaning, bounds, default or optionality, and enum values."""
    rs = stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="demo"), timeout=10)
    inputs = {i.name: i for i in rs.inputs}
    assert [i.name for i in rs.inputs] == ["deaths", "loss_yuan", "hazmat", "status", "level_m", "warning_m", "note"]
    deaths = inputs["deaths"]
    assert (deaths.type, deaths.unit, deaths.meaning, deaths.min, deaths.max) == (
        "integer",
        "人",
        "死亡人数",
        0,
        100000,
    )
    assert deaths.default_value.number_value == 0 and not deaths.required and not deaths.optional
    assert (
        inputs["loss_yuan"].type == "number"
        and inputs["loss_yuan"].HasField("min")
        and not inputs["loss_yuan"].HasField("max")
    )
    assert inputs["hazmat"].type == "boolean" and inputs["hazmat"].default_value.bool_value is False
    assert inputs["hazmat"].default_value.WhichOneof("kind") == "bool_value"
    status = inputs["status"]
    assert status.type == "enum" and status.default_value.string_value == "normal"
    assert [(v.id, v.label) for v in status.values] == [("normal", "正常"), ("danger", "险情"), ("breach", "决口")]
    level_m = inputs["level_m"]
    assert level_m.optional and not level_m.HasField("default_value") and level_m.meaning == "水位"
    assert inputs["warning_m"].default_value.number_value == 30.5
    assert inputs["note"].type == "string" and inputs["note"].optional


def test_get_ruleset_describes_levels_units_groups_and_rules(stub: pb_grpc.ResponseServiceStub) -> None:
    """GetRuleSet returns the levels, units, groups and rules of the version, each with its citation."""
    rs = stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="demo", version="2024.1"), timeout=10)
    assert rs.id == "demo" and list(rs.incident_types) == ["demo"]
    assert (rs.version.version, rs.version.active) == ("2024.1", True)
    assert [(lv.code, lv.name, lv.rank) for lv in rs.levels] == [
        ("IV", "一般", 1),
        ("III", "较大", 2),
        ("II", "重大", 3),
    ]
    assert rs.levels[2].citation.clause == "第九条"
    assert [(u.id, u.name, u.citation.clause) for u in rs.units] == [
        ("brigade", "消防大队", "第一条"),
        ("hq", "指挥部", "第二条"),
        ("chem", "应急管理局", "第三条"),
        ("police", "公安局", "第四条"),
    ]
    (combat,) = rs.groups
    assert (combat.id, combat.name, combat.lead.id, [m.id for m in combat.members]) == (
        "combat",
        "作战组",
        "brigade",
        ["brigade", "police"],
    )
    assert combat.citation.clause == "第五条"
    assert [r.id for r in rs.rules] == [
        "grade-IV",
        "grade-III",
        "grade-II",
        "hazmat",
        "breach-or-danger",
        "above-warning",
        "not-above-warning",
    ]
    assert rs.rules[0].citation.document == "等级标准" and rs.rules[0].citation.clause == "一般"
    assert [v.version for v in rs.versions] == ["2024.1"]


def test_get_ruleset_through_the_client(client: Client) -> None:
    """The client's get_ruleset returns the same rule set, and an unknown version raises RuleSetNotFound."""
    rs = client.get_ruleset("fire-linkage")
    assert rs.version.version == "2024.1" and [g.id for g in rs.groups] == FIRE_GROUPS
    assert {"deaths", "serious_injuries", "direct_loss_yuan", "hazardous_materials"} <= {i.name for i in rs.inputs}
    assert [lv.code for lv in rs.levels] == ["I", "II", "III", "IV"]
    with pytest.raises(RuleSetNotFound) as caught:
        client.get_ruleset("fire-linkage", "1999.9")
    assert "1999.9" in caught.value.message


@pytest.mark.parametrize(
    ("ruleset", "version", "code", "words"),
    [
        ("demo", "2099.1", grpc.StatusCode.NOT_FOUND, "has no version '2099.1'"),
        ("no-such-set", "", grpc.StatusCode.NOT_FOUND, "no rule set 'no-such-set'"),
        ("fire-linkge", "", grpc.StatusCode.NOT_FOUND, "did you mean 'fire-linkage'"),
        ("", "", grpc.StatusCode.INVALID_ARGUMENT, "ruleset: is required"),
    ],
    ids=["unknown version", "unknown rule set", "misspelt rule set", "no rule set named"],
)
def test_get_ruleset_refusals(
    stub: pb_grpc.ResponseServiceStub, ruleset: str, version: str, code: grpc.StatusCode, words: str
) -> None:
    """GetRuleSet refuses an unknown rule set or version with NOT_FOUND and a missing name with INVALID_ARGUMENT, naming what was wrong."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetRuleSet(pb.GetRuleSetRequest(ruleset=ruleset, version=version), timeout=10)
    got = details(caught.value)
    assert got.code == code and words in got.message
    if code == grpc.StatusCode.NOT_FOUND:
        assert got.resources == [ruleset]
    assert not re.search(r"Traceback|File \"", got.message)
