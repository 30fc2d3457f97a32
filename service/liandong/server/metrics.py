"""Prometheus metrics: every name in one place, registered on the registry passed in.

Label values stay bounded: methods and status codes are fixed sets, and rule set, version, level and
rule ids come only from loaded documents, never from what a caller sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
SHADOW_COMPARED = "liandong_shadow_compared"  # incidents the last shadow replay answered under both versions
SHADOW_CHANGED = "liandong_shadow_changed"  # of those, the answers that would change
RULE_FINDINGS = "liandong_rule_findings"  # unaccepted findings of the analysis, per loaded version

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.rpc_requests = Counter(
            RPC_REQUESTS, "gRPC calls handled, by method and status code", ["method", "code"], registry=registry
        )
        self.rpc_duration = Histogram(
            RPC_DURATION,
            "gRPC call latency, by method and status code",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.decisions = Counter(
            DECISIONS,
            "Determinations made, by rule set, version and level ('none' when no level)",
            ["ruleset", "version", "level"],
            registry=registry,
        )
        self.rule_hits = Counter(
            RULE_HITS, "Rules that fired, by rule set and rule id", ["ruleset", "rule"], registry=registry
        )
        self.evaluation_duration = Histogram(
            EVALUATION_DURATION,
            "Rule evaluation latency (validation, durable-rules, combining), without RPC overhead",
            ["ruleset"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
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
