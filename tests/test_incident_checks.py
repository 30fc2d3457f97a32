"""Answers never rest on facts the caller did not see: cross-input checks, empty reports, assumed inputs, exponent thresholds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog.testing
from google.protobuf.json_format import MessageToDict

from liandong import errors
from liandong.cli import EXIT_OK, EXIT_REFUSED, main
from liandong.client import Client, determination_from_proto
from liandong.document.load import load_document, parse_document
from liandong.engine.result import AssumedInput, Incident
from liandong.engine.runtime import DurableRuntime, definition_json
from liandong.rulebook import RuleBook
from liandong.server.answers import AnswerCodec
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import DATA, load_cases
from support.messages import answers_of, batches, request
from support.servers import target
from support.status import details

GAUGES = DATA / "checks"
DOCUMENT = GAUGES / "gauges" / "1.yaml"
CASES = load_cases("incident_checks.yaml")


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(GAUGES, runtime)


@pytest.mark.parametrize("case", CASES, ids=[str(c["note"]) for c in CASES])
def test_case(case: dict[str, Any], book: RuleBook) -> None:
    """The incident is answered with the case's rules, level and assumed inputs, or refused with exactly its field violations."""
    incident = Incident(type="gauge", facts=case["facts"])
    if "want_violations" in case:
        with pytest.raises(errors.InvalidIncident) as caught:
            book.determine(incident, explain=True)
        assert {v.field: v.reason for v in caught.value.violations} == case["want_violations"]
        return
    want = case["want"]
    for explain in (False, True):
        det = book.determine(incident, explain=explain)
        assert [r.id for r in det.matched_rules] == want["matched_rules"]
        assert (det.level.code if det.level else None) == want["level"]
        assert [a.input for a in det.assumed] == want["assumed"]


def test_a_breach_names_the_check_its_message_values_and_clauses(book: RuleBook) -> None:
    """Each violation of a breached check names the check id, its message, the values it read and its citations."""
    with pytest.raises(errors.InvalidIncident) as caught:
        book.determine(Incident(type="gauge", facts={"warning_level_m": 33.0, "guaranteed_level_m": 31.5}))
    for v in caught.value.violations:
        assert "breaks check 'warning-below-guaranteed': 警戒水位应低于保证水位" in v.description
        assert "warning_level_m = 33, guaranteed_level_m = 31.5" in v.description
        assert "测试预案 第三条; 水文规范 二" in v.description
    assert "warning-below-guaranteed" in caught.value.message


def test_assumed_values_are_what_the_rules_saw(book: RuleBook) -> None:
    """An assumed input carries the default the rules used (an enum as its id) and its meaning."""
    det = book.determine(Incident(type="gauge", facts={"water_level_m": 31.0}))
    assert det.assumed == (
        AssumedInput("warning_level_m", 30.0, "警戒水位"),
        AssumedInput("guaranteed_level_m", 32.0, "保证水位"),
        AssumedInput("dike_status", "normal", "堤防状况"),
        AssumedInput("seepage_m3s", 0, "渗漏量"),
    )
    assert {a.input: a.value for a in det.assumed}.items() <= det.facts.items()


def test_an_empty_report_declared_meaningful_is_answered_on_the_defaults(runtime: DurableRuntime) -> None:
    """With `empty_report: meaningful`, no facts at all is answered, and every default is listed as assumed."""
    text = DOCUMENT.read_text(encoding="utf-8").replace('version: "1"', 'version: "2"\nempty_report: meaningful')
    doc = parse_document(text.encode("utf-8"), "gauges.yaml")
    assert doc.empty_report_meaningful and not load_document(DOCUMENT).empty_report_meaningful
    det = RuleBook([doc], runtime).determine(Incident(type="gauge", facts={}))
    assert det.applies is False
    assert [a.input for a in det.assumed] == ["warning_level_m", "guaranteed_level_m", "dike_status", "seepage_m3s"]


def test_exponent_thresholds_reach_durable_rules_as_numbers(book: RuleBook) -> None:
    """Thresholds written 1e-05, 1.0e-06, 2.5E-05 and 1e+16 are read as numbers and written so durable-rules reads them."""
    doc = book.active("gauges").document
    operands = {r.id: r.when.operand for r in doc.rules if r.id.endswith("seepage")}  # type: ignore[union-attr]
    assert operands == {"trace-seepage": 1e-05, "tiny-seepage": (1e-06, 2.5e-05), "vast-seepage": 1e16}
    text = definition_json(book.active("gauges").rules)
    assert "1.0e-05" in text and "1.0e-06" in text and "2.5e-05" in text and "1.0e+16" in text
    assert json.loads(text) == json.loads(json.dumps(book.active("gauges").rules))


def test_definition_json_is_json_dumps_without_exponent_only_numbers() -> None:
    """A definition without such floats is written exactly as json.dumps writes it."""
    definition = {
        "r": {
            "all": [
                {
                    "m": {
                        "$and": [
                            {"$gte": {"x": 0.5}},
                            {"kind": "决口"},
                            {"$lt": {"y": {"$m": "z"}}},
                            {"flag": True},
                            {"n": None},
                            {"i": 3},
                        ]
                    }
                }
            ]
        }
    }
    assert definition_json(definition) == json.dumps(definition, ensure_ascii=False)


# -- through the service, the client and the CLI ---------------------------------------------------------
@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gauges rule set; `server` and `stub` come from conftest."""
    root = tmp_path_factory.mktemp("checks-rules")
    shutil.copytree(GAUGES / "gauges", root / "gauges")
    return root


BREACH = {"water_level_m": 31.0, "warning_level_m": 33.0, "guaranteed_level_m": 31.5}
BREACH_FIELDS = [
    ("incident.facts.warning_level_m", "check_failed"),
    ("incident.facts.guaranteed_level_m", "check_failed"),
]


def test_service_refuses_a_breach_with_a_violation_on_each_input(stub: pb_grpc.ResponseServiceStub) -> None:
    """Determine and DetermineStream refuse a breached check INVALID_ARGUMENT, with a BadRequest violation on each input naming the check."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Determine(request("gauge", BREACH), timeout=10)
    got = details(caught.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(f, reason) for f, _, reason in got.violations] == BREACH_FIELDS
    assert all("warning-below-guaranteed" in description for _, description, _ in got.violations)
    with pytest.raises(grpc.RpcError) as streamed:
        list(answers_of(stub.DetermineStream(batches([request("gauge", BREACH)]), timeout=10)))
    assert details(streamed.value).violations == got.violations


def test_service_refuses_an_empty_report_on_the_facts_field(stub: pb_grpc.ResponseServiceStub, server: Service) -> None:
    """An incident with no facts is INVALID_ARGUMENT with one violation on `incident.facts`; the client raises it with an empty field."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Determine(request("gauge", {}), timeout=10)
    got = details(caught.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(f, reason) for f, _, reason in got.violations] == [("incident.facts", "empty_report")]
    assert "no facts were sent" in got.message and ": : " not in got.message
    with Client(target(server), timeout=10) as client:
        with pytest.raises(errors.InvalidIncident) as raised:
            client.determine("gauge", {})
    assert [(v.field, v.reason) for v in raised.value.violations] == [("", "empty_report")]


def test_service_answers_list_assumed_inputs_byte_identically(
    stub: pb_grpc.ResponseServiceStub, book: RuleBook
) -> None:
    """Plain and explain answers carry `assumed` (input, value, meaning), and the joined bytes equal SerializeToString of the message."""
    plain = stub.Determine(request("gauge", {"water_level_m": 31.0, "dike_status": "险情"}), timeout=10)
    explained = stub.Determine(
        request("gauge", {"water_level_m": 31.0, "dike_status": "险情"}, explain=True), timeout=10
    )
    want = [
        {"input": "warning_level_m", "value": 30.0, "meaning": "警戒水位"},
        {"input": "guaranteed_level_m", "value": 32.0, "meaning": "保证水位"},
        {"input": "seepage_m3s", "value": 0.0, "meaning": "渗漏量"},
    ]
    for msg in (plain, explained):
        assert [MessageToDict(a) for a in msg.assumed] == want
    assert determination_from_proto(plain).assumed == (
        AssumedInput("warning_level_m", 30.0, "警戒水位"),
        AssumedInput("guaranteed_level_m", 32.0, "保证水位"),
        AssumedInput("seepage_m3s", 0.0, "渗漏量"),
    )
    codec = AnswerCodec(book.active("gauges"))
    for facts in (
        {"water_level_m": 31.0},
        {"seepage_m3s": 1.0},
        {"dike_status": "险情", "warning_level_m": 1, "guaranteed_level_m": 2, "seepage_m3s": 0},
    ):
        det = book.determine(Incident(type="gauge", facts=facts, id="x"))
        assert codec.wire(det, "d") == codec.message(det, "d", False).SerializeToString()
        assert len(pb.Determination.FromString(codec.wire(det, "d")).assumed) == len(det.assumed)


def test_cli_determine_shows_assumed_inputs_and_json_has_them(
    server: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    """`liandong determine` prints the assumed inputs with their values; --json carries them too."""
    assert main(["determine", "--target", target(server), "--type", "gauge", "--fact", "water_level_m=31"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "assumed    (not sent: the rule set's defaults were used)" in out
    assert (
        "  - warning_level_m = 30 (警戒水位)" in out
        and "  - dike_status = normal (堤防状况)" in out
        and "water_level_m =" not in out.split("assumed")[1]
    )
    assert (
        main(["determine", "--target", target(server), "--type", "gauge", "--fact", "water_level_m=31", "--json"])
        == EXIT_OK
    )
    answer = json.loads(capsys.readouterr().out)
    assert [a["input"] for a in answer["assumed"]] == [
        "warning_level_m",
        "guaranteed_level_m",
        "dike_status",
        "seepage_m3s",
    ]


def test_cli_determine_refuses_an_empty_report(server: Service, capsys: pytest.CaptureFixture[str]) -> None:
    """`liandong determine` without facts exits 3 and says no facts were sent."""
    assert main(["determine", "--target", target(server), "--type", "gauge"]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "no facts were sent" in err and "  : " not in err


def test_rules_explain_shows_assumed_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    """`liandong rules explain` prints the assumed inputs, and its JSON lists them with their values."""
    assert main(["rules", "explain", "gauges", "--rules-dir", str(GAUGES), "--fact", "water_level_m=31"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "  - dike_status = normal (堤防状况)" in out and "  - warning_level_m = 30 (警戒水位)" in out
    assert (
        main(["rules", "explain", "gauges", "--rules-dir", str(GAUGES), "--fact", "water_level_m=31", "--json"])
        == EXIT_OK
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["assumed"][2] == {"input": "dike_status", "value": "normal", "meaning": "堤防状况"}


def test_fixtures_compare_assumed_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fixture's `assumed` (and its _include/_exclude forms) is compared with the answer's assumed inputs; a wrong list fails the case."""
    assert main(["rules", "test", str(GAUGES)]) == EXIT_OK
    assert capsys.readouterr().out.strip().endswith("4 passed, 0 failed")
    shutil.copytree(GAUGES, tmp_path / "rules")
    fixtures = tmp_path / "rules" / "gauges" / "1.fixtures.yaml"
    fixtures.write_text(
        fixtures.read_text(encoding="utf-8").replace(
            "assumed: [warning_level_m, guaranteed_level_m, dike_status, seepage_m3s]",
            "assumed: [warning_level_m, guaranteed_level_m, dike_status]",
        ),
        encoding="utf-8",
    )
    assert main(["rules", "test", str(tmp_path / "rules")]) != EXIT_OK
    assert "assumed: unexpected ['seepage_m3s']" in capsys.readouterr().out


def test_get_ruleset_describes_checks_and_the_empty_report_rule(stub: pb_grpc.ResponseServiceStub) -> None:
    """GetRuleSet lists each check with its message, the inputs it reads and its citations, and says whether an empty report is answered."""
    rs = stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="gauges"), timeout=10)
    assert [(c.id, list(c.inputs)) for c in rs.checks] == [
        ("warning-below-guaranteed", ["warning_level_m", "guaranteed_level_m"]),
        ("level-below-1000", ["water_level_m", "reservoir_size"]),
    ]
    assert rs.checks[0].message == "警戒水位应低于保证水位" and [c.clause for c in rs.checks[0].citations] == [
        "第三条",
        "二",
    ]
    assert rs.checks[1].citations == [] and rs.empty_report_meaningful is False


def test_decision_log_names_the_assumed_inputs(stub: pb_grpc.ResponseServiceStub) -> None:
    """The decision log line lists the inputs the answer assumed, and has no such key when it assumed none."""
    with structlog.testing.capture_logs() as logs:
        stub.Determine(request("gauge", {"water_level_m": 31.0, "seepage_m3s": 0}, incident_id="log-1"), timeout=10)
        stub.Determine(
            request(
                "gauge",
                {"warning_level_m": 30, "guaranteed_level_m": 32, "dike_status": "normal", "seepage_m3s": 0},
                incident_id="log-2",
            ),
            timeout=10,
        )
    lines = {e["incident_id"]: e for e in logs if e["event"] == "decision"}
    assert lines["log-1"]["assumed"] == ["warning_level_m", "guaranteed_level_m", "dike_status"]
    assert "assumed" not in lines["log-2"]
