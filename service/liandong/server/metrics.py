"""Prometheus metrics: every name in one place, registered on the registry passed in.

Label values stay bounded: methods and status codes are fixed sets, and rule set, version, level and
rule ids come only from loaded documents, never from what a caller sends.
"""

from __future__ import annotations

import math
import platform
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from liandong.engine.result import Determination

RPC_REQUESTS = "liandong_rpc_requests"  # _total is added by the client library
RPC_DURATION = "liandong_rpc_duration_seconds"
DECISIONS = "liandong_decisions"
RULE_HITS = "liandong_rule_hits"
EVALUATION_DURATION = "liandong_evaluation_duration_seconds"
RELOADS = "liandong_reloads"
LAST_RELOAD_SUCCESS = "liandong_last_reload_success_timestamp_seconds"
RULESET_ACTIVE = "liandong_ruleset_active_info"
SERVING = "liandong_serving"
# The supervisor's own, with --workers N (server/workers.py): the workers' metrics come labelled by worker.
WORKERS = "liandong_workers"
WORKER_RESTARTS = "liandong_worker_restarts"  # _total is added by the client library
ADMIN_DENIED = "liandong_admin_denied"
BUILD_INFO = "liandong_build_info"
# Whether the rules directory holds what serves, worked out at scrape time (reload.py): the alert
# "files changed but no successful reload for too long" needs both.
RULES_DIRECTORY_UNAPPLIED = "liandong_rules_directory_unapplied"
RULES_DIRECTORY_CHANGED = "liandong_rules_directory_changed_timestamp_seconds"
# What the standard collectors export (prometheus_client names them; listed here for the rules and tests).
PROCESS_CPU = "process_cpu_seconds_total"
PROCESS_RESIDENT_MEMORY = "process_resident_memory_bytes"
PROCESS_START_TIME = "process_start_time_seconds"
PYTHON_INFO = "python_info"
PYTHON_GC_COLLECTIONS = "python_gc_collections_total"
SHADOW_COMPARED = "liandong_shadow_compared"  # incidents the last shadow replay answered under both versions
SHADOW_CHANGED = "liandong_shadow_changed"  # of those, the answers that would change
RULE_FINDINGS = "liandong_rule_findings"  # unaccepted findings of the analysis, per loaded version
# Incidents (server/incidents.py, server/clocks.py). The open and pending gauges are counted in the
# store at scrape time, so every replica reports the same numbers.
INCIDENTS_OPEN = "liandong_incidents_open"
INCIDENT_LEVEL_CHANGES = "liandong_incident_level_changes"  # _total is added by the client library
OBLIGATIONS_OVERDUE = "liandong_obligations_overdue"  # _total is added by the client library
OBLIGATIONS_PENDING = "liandong_obligations_pending"
TIMER_LAG = "liandong_timer_lag_seconds"
STORE_ERRORS = "liandong_store_errors"  # _total is added by the client library
INCIDENT_DENIED = "liandong_incident_denied"  # _total is added by the client library
TIMER_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 30.0, 300.0, 3600.0)

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_BOUNDS = (*LATENCY_BUCKETS, math.inf)
_LE = tuple(str(floatToGoString(b)) for b in _BOUNDS)  # type: ignore[no-untyped-call]

RPC_REQUESTS_HELP = "gRPC calls handled, by method and status code"
RPC_DURATION_HELP = "gRPC call latency, by method and status code"
DECISIONS_HELP = "Determinations made, by rule set, version and level ('none' when no level)"
RULE_HITS_HELP = "Rules that fired, by rule set and rule id"
EVALUATION_DURATION_HELP = "Rule evaluation latency (validation, durable-rules, combining), without RPC overhead"


class CallTallies(Collector):
    """What every call and decision counts (liandong_rpc_requests_total, liandong_rpc_duration_seconds,
    liandong_decisions_total, liandong_rule_hits_total, liandong_evaluation_duration_seconds), kept
    as plain tallies and turned into the same counter and histogram families at scrape time.

    prometheus_client's Counter and Histogram take a lock per increment and per observation; a fire
    decision made about eleven of them. Here one lock covers a whole call or decision. Every
    tally is only changed under the lock (the event loop, the web door, incident and reload
    threads all count), so no increment is lost. Counters are [count, created]; histograms
    [sum, created, one count per bucket, +Inf last], cumulated when scraped, as prometheus_client does.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], list[float]] = {}  # (method, code): [sum, created, buckets…, count]
        self._decisions: dict[tuple[str, str, str], list[float]] = {}
        self._rules: dict[tuple[str, str], list[float]] = {}
        self._evaluations: dict[str, list[float]] = {}
        if registry is not None:
            registry.register(self)

    def finished(self, method: str, code: str, elapsed: float) -> None:
        i = bisect_left(_BOUNDS, elapsed) + 2
        with self._lock:
            h = self._calls.get((method, code)) or self._calls.setdefault((method, code), _new_histogram())
            h[0] += elapsed
            h[i] += 1

    def decided(self, det: Determination, level: str, elapsed: float) -> None:
        ruleset = det.ruleset
        i = bisect_left(_BOUNDS, elapsed) + 2
        with self._lock:
            h = self._evaluations.get(ruleset) or self._evaluations.setdefault(ruleset, _new_histogram())
            h[0] += elapsed
            h[i] += 1
            key = (ruleset, det.version, level)
            (self._decisions.get(key) or self._decisions.setdefault(key, _new_counter()))[0] += 1
            rules = self._rules
            for rule in det.matched_rules:
                pair = (ruleset, rule.id)
                (rules.get(pair) or rules.setdefault(pair, _new_counter()))[0] += 1

    def describe(self) -> Iterator[Metric]:
        yield from self._families({}, {}, {}, {})

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            calls = {k: list(v) for k, v in self._calls.items()}
            decisions = {k: list(v) for k, v in self._decisions.items()}
            rules = {k: list(v) for k, v in self._rules.items()}
            evaluations = {k: list(v) for k, v in self._evaluations.items()}
        yield from self._families(calls, decisions, rules, evaluations)

    @staticmethod
    def _families(
        calls: dict[tuple[str, str], list[float]],
        decisions: dict[tuple[str, str, str], list[float]],
        rules: dict[tuple[str, str], list[float]],
        evaluations: dict[str, list[float]],
    ) -> Iterator[Metric]:
        created = prometheus_metrics._use_created  # PROMETHEUS_DISABLE_CREATED_SERIES, as the library reads it
        requests = CounterMetricFamily(RPC_REQUESTS, RPC_REQUESTS_HELP, labels=["method", "code"])
        for (method, code), h in calls.items():
            requests.add_metric([method, code], float(sum(h[2:])), created=h[1] if created else None)
        yield requests
        yield _histogram(RPC_DURATION, RPC_DURATION_HELP, ["method", "code"], calls.items(), created)
        yield _counter(DECISIONS, DECISIONS_HELP, ["ruleset", "version", "level"], decisions.items(), created)
        yield _counter(RULE_HITS, RULE_HITS_HELP, ["ruleset", "rule"], rules.items(), created)
        by_ruleset = [((k,), v) for k, v in evaluations.items()]
        yield _histogram(EVALUATION_DURATION, EVALUATION_DURATION_HELP, ["ruleset"], by_ruleset, created)


def _new_counter() -> list[float]:
    return [0, time.time()]  # count, created


def _new_histogram() -> list[float]:
    return [0.0, time.time(), *([0] * len(_BOUNDS))]  # sum, created, a count per bucket (+Inf last)


def _counter(
    name: str, doc: str, labelnames: list[str], tallies: Iterable[tuple[Sequence[str], list[float]]], created: bool
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labelnames)
    for labels, c in tallies:
        family.add_metric(list(labels), float(c[0]), created=c[1] if created else None)
    return family


def _histogram(
    name: str, doc: str, labelnames: list[str], tallies: Iterable[tuple[Sequence[str], list[float]]], created: bool
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labelnames)
    for labels, h in tallies:
        acc = 0.0
        buckets = []
        for le, n in zip(_LE, h[2:], strict=True):
            acc += n
            buckets.append((le, acc))
        family.add_metric(list(labels), buckets, h[0])
        if created:
            family.samples.append(Sample(name + "_created", dict(zip(labelnames, labels, strict=True)), h[1]))
    return family


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.calls = CallTallies(registry)  # rpc calls, decisions, rule hits, evaluation latency
        self.reloads = Counter(
            RELOADS, "Rule reloads by outcome (success, failure) and trigger", ["outcome", "trigger"], registry=registry
        )
        self.last_reload_success = Gauge(
            LAST_RELOAD_SUCCESS, "Unix time of the last reload that swapped in a new rule set", registry=registry
        )
        self.serving = Gauge(SERVING, "1 while the service answers, 0 while loading or draining", registry=registry)
        self.shadow_compared = Gauge(
            SHADOW_COMPARED,
            "Recorded incidents the last shadow replay (--shadow) answered under the serving and the newest version",
            ["ruleset"],
            registry=registry,
        )
        self.shadow_changed = Gauge(
            SHADOW_CHANGED,
            "Answers the last shadow replay (--shadow) found would change under the newest version",
            ["ruleset"],
            registry=registry,
        )
        self.rule_findings = Gauge(
            RULE_FINDINGS,
            "Unaccepted findings of the rule analysis (gaps, overlaps, masked rules, unused entries) per loaded version",
            ["ruleset", "version"],
            registry=registry,
        )
        self.admin_denied = Counter(
            ADMIN_DENIED,
            "Admin calls refused, by reason (missing, wrong): every one, though their log lines are rate-limited",
            ["reason"],
            registry=registry,
        )
        self.level_changes = Counter(
            INCIDENT_LEVEL_CHANGES,
            "Command level changes of incidents, by rule set and direction (escalated, lowered)",
            ["ruleset", "direction"],
            registry=registry,
        )
        self.obligations_overdue = Counter(
            OBLIGATIONS_OVERDUE, "Obligations that became overdue, by rule set", ["ruleset"], registry=registry
        )
        self.timer_lag = Histogram(
            TIMER_LAG,
            "From a clock's due time to its overdue event being written",
            buckets=TIMER_LAG_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            STORE_ERRORS,
            "Incident store operations that failed to reach the store, by operation",
            ["operation"],
            registry=registry,
        )
        self.incident_denied = Counter(
            INCIDENT_DENIED,
            "IncidentService calls refused for identity or role, by reason (unauthenticated, permission)",
            ["reason"],
            registry=registry,
        )


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    """What this process runs: Liandong's version and those of the parts an answer depends on."""
    from liandong import __version__

    return {
        "version": __version__,
        "durable_rules": _version("durable-rules"),
        "grpcio": _version("grpcio"),
        "python": platform.python_version(),
    }


def add_process_collectors(registry: CollectorRegistry) -> None:
    """process_*, python_* and liandong_build_info on the service's own registry (the default
    registry has the first two, but the service never uses the default one)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    if GC_COLLECTOR is not None:  # absent on interpreters without gc.get_stats()
        GCCollector(registry=registry)
    labels = build_labels()
    Gauge(BUILD_INFO, "Versions this process runs (value 1)", list(labels), registry=registry).labels(**labels).set(1)


DirectoryStatus = Callable[[], tuple[bool, float]]


class RulesDirectoryCollector(Collector):
    """Whether the rules directory now differs from the rules serving, and since when it holds what it holds."""

    def __init__(self, status: DirectoryStatus) -> None:
        self._status = status  # -> (unapplied, unix time the directory was last seen to change)

    def collect(self) -> Iterator[Metric]:
        unapplied, changed_at = self._status()
        yield GaugeMetricFamily(
            RULES_DIRECTORY_UNAPPLIED,
            "1 while the rules directory's content differs from the rules serving (changed, not yet reloaded, or failed)",
            value=1 if unapplied else 0,
        )
        yield GaugeMetricFamily(
            RULES_DIRECTORY_CHANGED,
            "Unix time this process first saw the rules directory hold its current content",
            value=changed_at,
        )


ActiveVersions = Callable[[], list[tuple[str, str, str]]]


class ActiveVersionCollector(Collector):
    """The version of each rule set in force now, worked out at scrape time.

    Which version is in force changes with the clock (effective_from), not only on reload, so a
    gauge set at reload would go stale.
    """

    def __init__(self, active: ActiveVersions) -> None:
        self._active = active  # -> [(ruleset, version, content_hash)]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            RULESET_ACTIVE,
            "The version of each rule set in force now (value 1)",
            labels=["ruleset", "version", "content_hash"],
        )
        for ruleset, version, digest in self._active():
            family.add_metric([ruleset, version, digest[:16]], 1)
        yield family


class IncidentCollector(Collector):
    """Open incidents by rule set and command level, and pending clocks, counted in the store at
    scrape time; a store that cannot be reached yields no samples rather than stale ones."""

    def __init__(self, open_counts: Callable[[], Sequence[tuple[str, str, int]]], pending: Callable[[], int]) -> None:
        self._open_counts = open_counts
        self._pending = pending

    def collect(self) -> Iterator[Metric]:
        opened = GaugeMetricFamily(
            INCIDENTS_OPEN, "Open incidents, by rule set and command level", labels=["ruleset", "level"]
        )
        pending = GaugeMetricFamily(OBLIGATIONS_PENDING, "Obligations with a running clock (pending, due time set)")
        try:
            for ruleset, level, count in self._open_counts():
                opened.add_metric([ruleset, level], count)
            pending.add_metric([], self._pending())
        except Exception:  # the store unreachable: counted in liandong_store_errors_total
            return
        yield opened
        yield pending
