"""The call and decision tallies expose exactly what prometheus_client's Counter and Histogram did."""

from __future__ import annotations

import random
import re
import threading
from types import SimpleNamespace
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from liandong.server import metrics as m
from liandong.server.calls import CallMetrics
from liandong.server.metrics import LATENCY_BUCKETS, Metrics


class Reference:
    """The five metrics as they were: prometheus_client's own Counter and Histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rpc_requests = Counter(m.RPC_REQUESTS, m.RPC_REQUESTS_HELP, ["method", "code"], registry=registry)
        self.rpc_duration = Histogram(
            m.RPC_DURATION, m.RPC_DURATION_HELP, ["method", "code"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.decisions = Counter(m.DECISIONS, m.DECISIONS_HELP, ["ruleset", "version", "level"], registry=registry)
        self.rule_hits = Counter(m.RULE_HITS, m.RULE_HITS_HELP, ["ruleset", "rule"], registry=registry)
        self.evaluation_duration = Histogram(
            m.EVALUATION_DURATION, m.EVALUATION_DURATION_HELP, ["ruleset"], buckets=LATENCY_BUCKETS, registry=registry
        )

    def finished(self, method: str, code: grpc.StatusCode, elapsed: float) -> None:
        self.rpc_requests.labels(method=method, code=code.name).inc()
        self.rpc_duration.labels(method=method, code=code.name).observe(elapsed)

    def decided(self, det: Any, level: str, elapsed: float) -> None:
        self.evaluation_duration.labels(ruleset=det.ruleset).observe(elapsed)
        self.decisions.labels(ruleset=det.ruleset, version=det.version, level=level).inc()
        for rule in det.matched_rules:
            self.rule_hits.labels(ruleset=det.ruleset, rule=rule.id).inc()


def _ours(registry: CollectorRegistry) -> str:
    """The exposition of the five families only (Metrics registers more)."""
    names = (m.RPC_REQUESTS, m.RPC_DURATION, m.DECISIONS, m.RULE_HITS, m.EVALUATION_DURATION)
    lines = generate_latest(registry).decode().splitlines()
    return "\n".join(line for line in lines if any(re.match(rf"^(# \w+ )?{n}(_|\b)", line) for n in names))


def _without_created_values(text: str) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text)


def _elapsed(rng: random.Random) -> float:
    """Latencies on, just under and just over every bucket bound, and between them."""
    bound = rng.choice((*LATENCY_BUCKETS, 2.0))
    return rng.choice((bound, bound * (1 - 1e-12), bound * (1 + 1e-12), rng.uniform(0, bound), 0.0))


def test_exposition_equals_prometheus_clients_own() -> None:
    """Over 5 000 varied calls and decisions the scrape text is the reference's, but for the created times."""
    rng = random.Random(19)
    ref_registry = CollectorRegistry()
    new_registry = CollectorRegistry()
    ref = Reference(ref_registry)
    new = CallMetrics(Metrics(new_registry))
    codes = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED)
    rules = [SimpleNamespace(id=f"r{i}") for i in range(12)]
    for _ in range(5000):
        if rng.random() < 0.5:
            method, code, elapsed = rng.choice(("Determine", "ListRuleSets")), rng.choice(codes), _elapsed(rng)
            ref.finished(method, code, elapsed)
            new.finished(method, code, elapsed)
        else:
            det = SimpleNamespace(
                ruleset=rng.choice(("fire-linkage", "flood-control")),
                version=rng.choice(("1.0.0", "1.1.0")),
                matched_rules=tuple(rng.sample(rules, rng.randint(0, 8))),
            )
            level, elapsed = rng.choice(("I", "II", "none")), _elapsed(rng)
            ref.decided(det, level, elapsed)
            new.decided(det, level, elapsed)  # type: ignore[arg-type]  # the fields decided reads
    want = _ours(ref_registry)
    got = _ours(new_registry)
    assert "_created{" in want
    assert _without_created_values(got) == _without_created_values(want)
    for name, labels in [
        (m.RULE_HITS + "_total", {"ruleset": "fire-linkage", "rule": "r3"}),
        (m.RPC_DURATION + "_bucket", {"method": "Determine", "code": "OK", "le": "0.0005"}),
        (m.EVALUATION_DURATION + "_sum", {"ruleset": "flood-control"}),
    ]:
        assert new_registry.get_sample_value(name, labels) == ref_registry.get_sample_value(name, labels)


def test_empty_families_are_exposed_as_before() -> None:
    """Before any call the scrape shows the five families' HELP and TYPE lines and no samples, as before."""
    ref_registry = CollectorRegistry()
    Reference(ref_registry)
    new_registry = CollectorRegistry()
    Metrics(new_registry)
    assert _ours(new_registry) == _ours(ref_registry)


def test_no_increment_is_lost_across_threads() -> None:
    """Four threads counting at once: every call, decision and rule hit is in the totals."""
    registry = CollectorRegistry()
    calls = CallMetrics(Metrics(registry))
    det = SimpleNamespace(
        ruleset="fire-linkage", version="1.0.0", matched_rules=tuple(SimpleNamespace(id=f"r{i}") for i in range(8))
    )
    per_thread = 20_000

    def work() -> None:
        for _ in range(per_thread):
            calls.finished("Determine", grpc.StatusCode.OK, 0.0003)
            calls.decided(det, "I", 0.0002)  # type: ignore[arg-type]  # the fields decided reads

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = 4.0 * per_thread
    assert registry.get_sample_value(m.RPC_REQUESTS + "_total", {"method": "Determine", "code": "OK"}) == total
    assert registry.get_sample_value(m.RPC_DURATION + "_count", {"method": "Determine", "code": "OK"}) == total
    assert (
        registry.get_sample_value(m.DECISIONS + "_total", {"ruleset": "fire-linkage", "version": "1.0.0", "level": "I"})
        == total
    )
    for i in range(8):
        assert registry.get_sample_value(m.RULE_HITS + "_total", {"ruleset": "fire-linkage", "rule": f"r{i}"}) == total
    assert (
        registry.get_sample_value(m.EVALUATION_DURATION + "_bucket", {"ruleset": "fire-linkage", "le": "0.00025"})
        == total
    )
