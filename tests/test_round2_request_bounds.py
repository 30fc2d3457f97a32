"""Free strings and occurred_at at and past their bounds: every input a caller can send gets a documented code, never INTERNAL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog.testing

from liandong.server import bounds
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import load_cases
from support.messages import answers_of, batches, request
from support.rules import copy_demo
from support.status import details

CASES = load_cases("round2_request_bounds.yaml")
MAX_LOG_LINE = 4096  # characters: a refused request must not write a line that grows with it


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo rule set; `server` and `stub` come from conftest."""
    root = tmp_path_factory.mktemp("bounds-rules")
    copy_demo(root)
    return root


def _text(spec: Any) -> str:
    return str(spec["repeat"]) * int(spec["times"]) if isinstance(spec, dict) else str(spec)


def _request(case: dict[str, Any]) -> pb.DetermineRequest:
    r = case["request"]
    facts: dict[str, object] = {"deaths": 1}
    if "fact_name_length" in r:
        facts["f" * int(r["fact_name_length"])] = 1
    req = request(
        _text(r["type"]),
        facts,
        incident_id=_text(r.get("id", "")),
        ruleset=_text(r.get("ruleset", "")),
        version=_text(r.get("version", "")),
    )
    if "seconds" in r:
        req.incident.occurred_at.seconds = int(r["seconds"])
        req.incident.occurred_at.nanos = int(r.get("nanos", 0))
    return req


def _outcome(call: Any) -> tuple[str, list[str]]:
    try:
        call()
    except grpc.RpcError as exc:
        got = details(exc)
        violations = [
            f"{f}: {reason}"
            if f in ("incident.id", "incident.type", "ruleset", "version", "incident.occurred_at")
            else reason
            for f, _, reason in got.violations
        ]
        return got.code.name, violations
    return "OK", []


def _want(case: dict[str, Any]) -> tuple[str, list[str]]:
    return case["want"]["code"], list(case["want"].get("violations", []))


@pytest.mark.parametrize("case", CASES, ids=[str(c["note"]) for c in CASES])
def test_determine(stub: pb_grpc.ResponseServiceStub, case: dict[str, Any]) -> None:
    """Determine answers or refuses the request with the documented code and violation, and logs no line that grows with it."""
    with structlog.testing.capture_logs() as logs:
        assert _outcome(lambda: stub.Determine(_request(case), timeout=10)) == _want(case)
    assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs
    assert all(len(str(e)) < MAX_LOG_LINE for e in logs)


@pytest.mark.parametrize("case", CASES, ids=[str(c["note"]) for c in CASES])
def test_stream(stub: pb_grpc.ResponseServiceStub, case: dict[str, Any]) -> None:
    """As the second request of a stream, the request is answered, or ends the stream with its code after the first answer."""
    got: list[pb.Determination] = []

    def call() -> None:
        got.extend(
            answers_of(stub.DetermineStream(batches([request("demo", {"deaths": 3}), _request(case)]), timeout=10))
        )

    with structlog.testing.capture_logs() as logs:
        code, violations = _outcome(call)
    assert (code, violations) == _want(case)
    assert len(got) == (2 if code == "OK" else 1) and got[0].level.code == "III"
    assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs


def test_get_rule_set_names_are_bounded(stub: pb_grpc.ResponseServiceStub) -> None:
    """GetRuleSet refuses a rule set or version name over the bound with INVALID_ARGUMENT, and answers one at it with NOT_FOUND."""
    long_name = "r" * (bounds.MAX_NAME_CHARS + 1)
    assert _outcome(lambda: stub.GetRuleSet(pb.GetRuleSetRequest(ruleset=long_name), timeout=10)) == (
        "INVALID_ARGUMENT",
        ["ruleset: too_long"],
    )
    assert _outcome(lambda: stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="demo", version=long_name), timeout=10)) == (
        "INVALID_ARGUMENT",
        ["version: too_long"],
    )
    assert (
        _outcome(lambda: stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="r" * bounds.MAX_NAME_CHARS), timeout=10))[0]
        == "NOT_FOUND"
    )
