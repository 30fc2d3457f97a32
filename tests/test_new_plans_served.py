"""The coal-mine, food-and-drug and township social-security rule sets (issue 15) are served over gRPC,
claim incident types no other bundled rule set claims, and a type two rule sets claim is still refused
with FAILED_PRECONDITION naming both."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator

import grpc
import pytest

from liandong.document.load import load_tree
from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import BUNDLED
from support.messages import request
from support.rules import copy_bundled
from support.servers import channel, running, target
from support.status import details

RULE_SETS = ("coal-mine-linkage", "food-drug-safety", "township-social-security")  # conftest.py `rules_dir`
NEW_TYPES = {
    "coal-mine-linkage": "coal_mine_accident",
    "food-drug-safety": "food_drug_incident",
    "township-social-security": "social_security_incident",
}


def _obligations(answer: pb.Determination) -> dict[str, pb.Obligation]:
    return {o.id: o for o in answer.obligations}


def test_every_new_rule_set_is_listed_with_its_type(stub: pb_grpc.ResponseServiceStub) -> None:
    """ListRuleSets names each new rule set with its one incident type and a version in force."""
    listed = {s.id: s for s in stub.ListRuleSets(pb.ListRuleSetsRequest(), timeout=10).rulesets}
    for ruleset, incident_type in NEW_TYPES.items():
        assert list(listed[ruleset].incident_types) == [incident_type]
        assert listed[ruleset].active_version == "2024.1"


@pytest.mark.parametrize(
    ("deaths", "code"), [(2, "IV"), (3, "III"), (9, "III"), (10, "II"), (29, "II"), (30, "I")], ids=lambda v: str(v)
)
def test_coal_mine_accident_is_graded_through_the_server(
    stub: pb_grpc.ResponseServiceStub, deaths: int, code: str
) -> None:
    """A coal-mine accident is answered by coal-mine-linkage with the 条例 第三条 grade on both sides of each death boundary."""
    answer = stub.Determine(request("coal_mine_accident", {"deaths": deaths}), timeout=10)
    assert answer.ruleset == "coal-mine-linkage" and answer.applies
    assert answer.level.code == code
    assert answer.lead_agency.id == "leading_group"
    assert [a.input for a in answer.assumed] == ["serious_injuries", "direct_economic_loss_yuan"]


def test_coal_mine_reporting_chain_keeps_its_times_over_the_wire(stub: pb_grpc.ResponseServiceStub) -> None:
    """A 重大 accident carries the plan's at-once report and the regulation's 1-hour and per-level 2-hour limits up to the State Council."""
    answer = stub.Determine(request("coal_mine_accident", {"serious_injuries": 50}), timeout=10)
    assert answer.level.code == "II"
    got = _obligations(answer)
    assert got["report_at_once"].timing == pb.Obligation.TIMING_AT_ONCE
    assert got["report_at_once"].within.ToSeconds() == 0
    assert got["head_reports_1h"].timing == pb.Obligation.TIMING_WITHIN
    assert got["head_reports_1h"].within.ToSeconds() == 3600
    for step in ("county_reports_2h", "city_reports_2h", "province_reports_2h"):
        assert got[step].timing == pb.Obligation.TIMING_WITHIN and got[step].within.ToSeconds() == 7200
    assert got["risk_assessment"].timing == pb.Obligation.TIMING_UNSPECIFIED and not got["risk_assessment"].who
    assert {c.document for c in got["county_reports_2h"].citations} == {"生产安全事故报告和调查处理条例"}
    # 一般 stops at the districted city.
    general = _obligations(stub.Determine(request("coal_mine_accident", {"deaths": 2}), timeout=10))
    assert "county_reports_2h" in general and "city_reports_2h" not in general


def test_food_drug_incident_applies_with_no_level(stub: pb_grpc.ResponseServiceStub) -> None:
    """A food or drug incident is answered by food-drug-safety with no level (the plan grades nothing), the township leading."""
    answer = stub.Determine(request("food_drug_incident", {"product_category": "药品"}), timeout=10)
    assert answer.ruleset == "food-drug-safety" and answer.applies
    assert not answer.HasField("level")
    assert answer.lead_agency.id == "township_government"
    units = [u.id for u in answer.participating_units]
    assert "regulator" in units and "expert_group" in units and "adr_network" in units
    assert "health_department" not in units
    assert _obligations(answer)["first_time_measures"].timing == pb.Obligation.TIMING_AT_ONCE


def test_social_security_incident_calls_its_category_body(stub: pb_grpc.ResponseServiceStub) -> None:
    """A social-security incident is answered by township-social-security with the 专项应急指挥机构 of its category only."""
    answer = stub.Determine(request("social_security_incident", {"category": "恐怖袭击事件"}), timeout=10)
    assert answer.ruleset == "township-social-security" and answer.applies
    assert not answer.HasField("level")
    assert answer.lead_agency.id == "township_committee"
    special = [u.id for u in answer.participating_units if u.id.startswith("special_")]
    assert special == ["special_terrorist_attack"]
    assert _obligations(answer)["report_to_township"].timing == pb.Obligation.TIMING_PROMPTLY


def test_unknown_social_security_category_is_invalid_argument(stub: pb_grpc.ResponseServiceStub) -> None:
    """A category outside the 四大类 is refused with INVALID_ARGUMENT and a violation on that input."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Determine(request("social_security_incident", {"category": "一般治安案件"}), timeout=10)
    got = details(caught.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in got.fields()] == ["incident.facts.category"]


def test_no_incident_type_is_claimed_by_two_bundled_rule_sets() -> None:
    """Every incident type of the bundled rule sets, the new ones included, is claimed by exactly one rule set."""
    claimed: dict[str, set[str]] = defaultdict(set)
    for doc in load_tree(BUNDLED):
        for incident_type in doc.incident_types:
            claimed[incident_type].add(doc.ruleset)
    twice = {t: sorted(r) for t, r in claimed.items() if len(r) > 1}
    assert not twice, twice
    for ruleset, incident_type in NEW_TYPES.items():
        assert claimed[incident_type] == {ruleset}


# -- a type claimed twice ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coal_twice(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> Iterator[Service]:
    """coal-mine-linkage beside a renamed copy of itself: two rule sets claiming coal_mine_accident."""
    root = tmp_path_factory.mktemp("coal-twice")
    original = copy_bundled(root, "coal-mine-linkage")
    copy = root / "coal-mine-linkage-county"
    shutil.copytree(original, copy)
    for path in copy.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert "ruleset: coal-mine-linkage\n" in text
        path.write_text(text.replace("ruleset: coal-mine-linkage\n", "ruleset: coal-mine-linkage-county\n"), "utf-8")
    with running(root, runtime, metrics_listen="") as svc:
        yield svc


def test_coal_mine_accident_claimed_twice_is_failed_precondition_naming_both(coal_twice: Service) -> None:
    """With two rule sets claiming coal_mine_accident and none named, Determine fails with FAILED_PRECONDITION naming both; naming one answers."""
    with channel(target(coal_twice)) as ch:
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Determine(request("coal_mine_accident", {"deaths": 3}), timeout=10)
        got = details(caught.value)
        assert got.code == grpc.StatusCode.FAILED_PRECONDITION
        assert sorted(got.preconditions) == ["coal-mine-linkage", "coal-mine-linkage-county"]
        assert "coal-mine-linkage, coal-mine-linkage-county" in got.message
        for name in ("coal-mine-linkage", "coal-mine-linkage-county"):
            answer = stub.Determine(request("coal_mine_accident", {"deaths": 3}, ruleset=name), timeout=10)
            assert answer.ruleset == name and answer.level.code == "III"
