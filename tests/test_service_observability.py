"""End to end: Prometheus metrics scraped from the service's endpoint, and the per-decision log lines."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server import metrics as names
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import answers_of, batches, request
from support.metrics import sample, samples, scrape, value
from support.processes import wait_until
from support.rules import canonical_hash, copy_demo, write_quiet
from support.servers import LOOPBACK, channel, running, target


@dataclass
class Observed:
    svc: Service
    registry: CollectorRegistry
    stub: pb_grpc.ResponseServiceStub
    rules: Path
    started_at: float


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> Iterator[Observed]:
    rules = tmp_path_factory.mktemp("metrics-rules")
    copy_demo(rules)
    registry = CollectorRegistry()
    started = time.time()
    with running(rules, runtime, registry, metrics_listen=f"{LOOPBACK}:0") as svc, channel(target(svc)) as ch:
        yield Observed(svc, registry, pb_grpc.ResponseServiceStub(ch), rules, started)  # type: ignore[no-untyped-call]


def _refused(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    code: grpc.StatusCode = caught.value.code()
    return code


# -- metrics --------------------------------------------------------------------------------------------------
def test_request_counts_and_latency_by_method_and_code(observed: Observed) -> None:
    """Each RPC is counted and timed once by method and final status code, on the endpoint and in the registry."""
    reg, stub = observed.registry, observed.stub
    keys = [
        ("Determine", "OK"),
        ("Determine", "INVALID_ARGUMENT"),
        ("DetermineStream", "OK"),
        ("DetermineStream", "NOT_FOUND"),
        ("ListRuleSets", "OK"),
        ("GetRuleSet", "NOT_FOUND"),
    ]
    before = {k: sample(reg, "liandong_rpc_requests_total", method=k[0], code=k[1]) for k in keys}
    stub.Determine(request("demo", {"deaths": 1}), timeout=10)
    stub.Determine(request("demo", {"deaths": 5}), timeout=10)
    assert (
        _refused(lambda: stub.Determine(request("demo", {"deaths": -5}), timeout=10))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        len(
            list(
                answers_of(
                    stub.DetermineStream(batches([request("demo", {"deaths": n}) for n in range(3)]), timeout=10)
                )
            )
        )
        == 3
    )
    assert (
        _refused(lambda: list(stub.DetermineStream(batches([request("demo", {}, ruleset="nope")]), timeout=10)))
        == grpc.StatusCode.NOT_FOUND
    )
    stub.ListRuleSets(pb.ListRuleSetsRequest(), timeout=10)
    assert (
        _refused(lambda: stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="demo", version="0"), timeout=10))
        == grpc.StatusCode.NOT_FOUND
    )
    # A stream is counted once grpc has terminated it, which can be just after its caller has the status.
    assert wait_until(
        lambda: (
            sample(reg, "liandong_rpc_requests_total", method="DetermineStream", code="OK")
            - before[("DetermineStream", "OK")]
            >= 1
        ),
        10,
    )
    delta = {k: sample(reg, "liandong_rpc_requests_total", method=k[0], code=k[1]) - before[k] for k in keys}
    assert delta == {
        ("Determine", "OK"): 2,
        ("Determine", "INVALID_ARGUMENT"): 1,
        ("DetermineStream", "OK"): 1,
        ("DetermineStream", "NOT_FOUND"): 1,
        ("ListRuleSets", "OK"): 1,
        ("GetRuleSet", "NOT_FOUND"): 1,
    }
    page = samples(scrape(observed.svc.metrics_port))
    for method, code in keys:
        counted = value(page, "liandong_rpc_requests_total", method=method, code=code)
        assert counted == sample(reg, "liandong_rpc_requests_total", method=method, code=code)
        assert value(page, "liandong_rpc_duration_seconds_count", method=method, code=code) == counted
        assert value(page, "liandong_rpc_duration_seconds_bucket", method=method, code=code, le="+Inf") == counted


def test_cancelled_stream_is_counted_once(observed: Observed) -> None:
    """A DetermineStream the caller cancels midway, with requests still to send, is counted exactly once, CANCELLED or OK (grpc.aio can hand the handler a cancel as a plain end of the requests: tests/test_round2_stream_cancel.py)."""
    reg = observed.registry
    before = {
        c: sample(reg, "liandong_rpc_requests_total", method="DetermineStream", code=c) for c in ("OK", "CANCELLED")
    }
    hold = threading.Event()

    def incidents() -> Iterator[pb.DetermineRequest]:
        yield request("demo", {"deaths": 1})
        hold.wait(15)  # the caller never finishes sending: the stream can only end by the cancel

    def delta() -> dict[str, float]:
        return {
            c: sample(reg, "liandong_rpc_requests_total", method="DetermineStream", code=c) - before[c] for c in before
        }

    call = observed.stub.DetermineStream(batches(incidents()), timeout=20)
    try:
        assert next(answers_of(call)).level.code == "IV"
        call.cancel()
        assert wait_until(lambda: sum(delta().values()) >= 1, 10), delta()
    finally:
        hold.set()
    assert sum(delta().values()) == 1 and set(delta().values()) == {0.0, 1.0}, delta()


def test_decisions_by_ruleset_version_and_level(observed: Observed) -> None:
    """Every determination, unary or streamed, is counted by rule set, version and level."""
    reg, stub = observed.registry, observed.stub
    levels = ("IV", "III", "II")
    before = {lv: sample(reg, "liandong_decisions_total", ruleset="demo", version="2024.1", level=lv) for lv in levels}
    stub.Determine(request("demo", {"deaths": 3}), timeout=10)
    stub.Determine(request("demo", {"deaths": 10}), timeout=10)
    list(stub.DetermineStream(batches([request("demo", {"deaths": d}) for d in (0, 4, 5, 50)]), timeout=10))
    _refused(lambda: stub.Determine(request("demo", {"deaths": "x"}), timeout=10))  # refused: no decision
    delta = {
        lv: sample(reg, "liandong_decisions_total", ruleset="demo", version="2024.1", level=lv) - before[lv]
        for lv in levels
    }
    assert delta == {"IV": 1, "III": 3, "II": 2}
    page = samples(scrape(observed.svc.metrics_port))
    assert value(page, "liandong_decisions_total", ruleset="demo", version="2024.1", level="III") == sample(
        reg, "liandong_decisions_total", ruleset="demo", version="2024.1", level="III"
    )


def test_rule_hits_by_rule(observed: Observed) -> None:
    """Each rule that fires is counted once per determination under its rule set and id."""
    reg, stub = observed.registry, observed.stub
    rules = ("grade-III", "hazmat", "breach-or-danger", "not-above-warning", "grade-II")
    before = {r: sample(reg, "liandong_rule_hits_total", ruleset="demo", rule=r) for r in rules}
    stub.Determine(request("demo", {"deaths": 3, "hazmat": True}), timeout=10)
    stub.Determine(request("demo", {"deaths": 4, "status": "breach"}), timeout=10)
    delta = {r: sample(reg, "liandong_rule_hits_total", ruleset="demo", rule=r) - before[r] for r in rules}
    assert delta == {"grade-III": 2, "hazmat": 1, "breach-or-danger": 1, "not-above-warning": 2, "grade-II": 0}
    page = samples(scrape(observed.svc.metrics_port))
    assert value(page, "liandong_rule_hits_total", ruleset="demo", rule="hazmat") == sample(
        reg, "liandong_rule_hits_total", ruleset="demo", rule="hazmat"
    )


def test_evaluation_latency_histogram(observed: Observed) -> None:
    """Evaluation latency is a histogram per rule set with one observation per determination, separate from RPC latency."""
    reg, stub = observed.registry, observed.stub
    before = sample(reg, "liandong_evaluation_duration_seconds_count", ruleset="demo")
    list(stub.DetermineStream(batches([request("demo", {"deaths": n}) for n in range(7)], size=3), timeout=10))
    assert sample(reg, "liandong_evaluation_duration_seconds_count", ruleset="demo") - before == 7
    text = scrape(observed.svc.metrics_port)
    assert "# TYPE liandong_evaluation_duration_seconds histogram" in text
    assert "# TYPE liandong_rpc_duration_seconds histogram" in text
    page = samples(text)
    count = value(page, "liandong_evaluation_duration_seconds_count", ruleset="demo")
    buckets = sorted(
        (
            (float(dict(labels)["le"]), v)
            for (name, labels), v in page.items()
            if name == "liandong_evaluation_duration_seconds_bucket" and dict(labels).get("ruleset") == "demo"
        ),
    )
    assert [le for le, _ in buckets] == [*names.LATENCY_BUCKETS, float("inf")]
    assert buckets[-1][1] == count and all(a <= b for (_, a), (_, b) in itertools.pairwise(buckets))
    assert (value(page, "liandong_evaluation_duration_seconds_sum", ruleset="demo") or 0) > 0


def test_reload_and_active_version_metrics(observed: Observed) -> None:
    """The startup load is counted as a successful reload, its time is the last-success timestamp, and the active version's info carries its hash."""
    page = samples(scrape(observed.svc.metrics_port))
    assert value(page, "liandong_reloads_total", outcome="success", trigger="startup") == 1
    assert value(page, "liandong_reloads_total", outcome="failure", trigger="startup") is None
    stamp = value(page, "liandong_last_reload_success_timestamp_seconds")
    assert stamp is not None and observed.started_at - 1 <= stamp <= time.time() + 1
    digest = canonical_hash(observed.rules / "demo" / "2024.1.yaml")
    assert value(page, "liandong_ruleset_active_info", ruleset="demo", version="2024.1", content_hash=digest[:16]) == 1
    assert value(page, "liandong_serving") == 1
    assert sample(observed.registry, "liandong_serving") == 1


def test_label_values_stay_bounded(observed: Observed) -> None:
    """What a caller sends (rule set names, versions, types, fact values) never becomes a label value; only methods and codes may be new."""
    stub = observed.stub

    def label_values() -> set[str]:
        return {v for (_, labels) in samples(scrape(observed.svc.metrics_port)) for _, v in labels}

    before = label_values()
    junk = [f"zz-caller-{n}" for n in range(10)]
    for word in junk:
        _refused(lambda word=word: stub.Determine(request("demo", {}, ruleset=word), timeout=10))
        _refused(lambda word=word: stub.Determine(request("demo", {}, version=word), timeout=10))
        _refused(lambda word=word: stub.Determine(request(word, {}), timeout=10))
        _refused(lambda word=word: stub.Determine(request("demo", {"status": word, word: 1}), timeout=10))
        _refused(lambda word=word: stub.GetRuleSet(pb.GetRuleSetRequest(ruleset=word, version=word), timeout=10))
    text = scrape(observed.svc.metrics_port)
    assert "zz-caller" not in text
    new = label_values() - before
    assert new <= {"Determine", "GetRuleSet"} | {c.name for c in grpc.StatusCode}, new


# -- decision logs --------------------------------------------------------------------------------------------
def test_one_decision_log_line_per_determination(observed: Observed) -> None:
    """Each Determine logs exactly one `decision` event with its id, rule set, version, level, rule ids and latency, and no facts."""
    with structlog.testing.capture_logs() as logs:
        det = observed.stub.Determine(
            request("demo", {"deaths": 3, "note": "张三 13800000000"}, incident_id="inc-7"), timeout=10
        )
    decisions = [e for e in logs if e["event"] == "decision"]
    assert len(decisions) == 1
    (line,) = decisions
    assert line["decision_id"] == det.decision_id and line["incident_id"] == "inc-7"
    assert (line["ruleset"], line["version"], line["response_level"]) == ("demo", "2024.1", "III")
    assert line["rules"] == [r.id for r in det.matched_rules] == ["grade-III", "not-above-warning"]
    assert isinstance(line["latency_ms"], (int, float)) and line["latency_ms"] >= 0
    assert line["log_level"] == "info"
    assert "facts" not in line
    assert "13800000000" not in repr(logs)


def test_stream_logs_one_decision_per_answer_and_none_for_refusals(observed: Observed) -> None:
    """A stream logs one decision per answer in order; a refused request logs no decision."""
    with structlog.testing.capture_logs() as logs:
        answers = list(
            answers_of(
                observed.stub.DetermineStream(
                    batches([request("demo", {"deaths": d}, incident_id=f"s{d}") for d in (1, 3, 10)], size=2),
                    timeout=10,
                )
            )
        )
        _refused(lambda: observed.stub.Determine(request("demo", {"deaths": -1}), timeout=10))
    decisions = [e for e in logs if e["event"] == "decision"]
    assert [(e["incident_id"], e["response_level"], e["decision_id"]) for e in decisions] == [
        (a.incident_id, a.level.code, a.decision_id) for a in answers
    ]


def test_decision_log_includes_facts_only_when_enabled(tmp_path: Path, runtime: DurableRuntime) -> None:
    """With log_facts on, the decision line carries the evaluated facts (defaults filled)."""
    copy_demo(tmp_path)
    with running(tmp_path, runtime, metrics_listen="", log_facts=True) as svc, channel(target(svc)) as ch:
        with structlog.testing.capture_logs() as logs:
            pb_grpc.ResponseServiceStub(ch).Determine(request("demo", {"deaths": 3, "status": "险情"}), timeout=10)  # type: ignore[no-untyped-call]
    (line,) = [e for e in logs if e["event"] == "decision"]
    assert line["facts"]["deaths"] == 3 and line["facts"]["status"] == "danger" and line["facts"]["hazmat"] is False


def test_no_rule_applies_is_logged_with_level_none(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A determination with no level is logged and counted with level 'none'."""
    write_quiet(tmp_path)
    registry = CollectorRegistry()
    with running(tmp_path, runtime, registry, metrics_listen="") as svc, channel(target(svc)) as ch:
        with structlog.testing.capture_logs() as logs:
            det = pb_grpc.ResponseServiceStub(ch).Determine(request("quiet", {"deaths": 0}), timeout=10)  # type: ignore[no-untyped-call]
    assert det.applies is False
    (line,) = [e for e in logs if e["event"] == "decision"]
    assert line["response_level"] == "none" and line["applies"] is False and line["rules"] == []
    assert sample(registry, "liandong_decisions_total", ruleset="quiet", version="2024.1", level="none") == 1
