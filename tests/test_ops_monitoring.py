"""The shipped dashboard and Prometheus rules: every expression parses (promtool), names only
metrics the service exports (read from a running service's /metrics), and the alert rules behave as
their unit tests say (promtool test rules, deploy/prometheus/*_test.yml)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from liandong.engine.runtime import DurableRuntime
from liandong.server.workers import Supervisor
from liandong.v1 import incidents_pb2 as ipb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import ROOT
from support.incidents import ManualClock, facts, incident_service, requested
from support.incidents import stub as incident_stub
from support.messages import request
from support.metrics import scrape
from support.rules import copy_bundled
from support.servers import LOOPBACK, make_config, running

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "liandong-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "liandong.json"
# Grafana's variables, replaced by values Prometheus accepts before an expression is parsed.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$job": "liandong"}
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every target
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
KEYWORDS |= {"inf", "nan"}


def promtool_or_skip() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not installed (Debian package `prometheus`; tests/reliability/setup_tools.sh installs it)"
        )
    return path


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel, Grafana variables replaced."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a Grafana variable the test does not know: {expr}"
            found.append((panel["title"], expr))
    return found


def rule_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: identifiers left once strings, label matchers,
    ranges, grouping clauses and function calls are taken out. (The expression parses, checked by
    promtool; this only reads names.)"""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group(0).lower() in KEYWORDS:
            continue  # a function, or an operator word
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the unit of a number such as 1e3
        names.add(match.group(0))
    return names


def test_metric_names_reads_selectors_not_functions_or_labels() -> None:
    """The name reader finds the series of an expression and nothing else (no functions, labels, keywords or strings)."""
    expr = (
        'histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{job=~"x|y", code!="OK"}[5m])))'
        " / on (job) group_left (version) b_info or vector(0) and time() - c_seconds > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_info", "c_seconds"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> Iterator[set[str]]:
    """Every sample name a running service's /metrics shows after answered and refused calls, plus
    those the --workers supervisor adds (its own registry)."""
    rules = tmp_path_factory.mktemp("monitoring-rules")
    copy_bundled(rules, "fire-linkage")
    with running(rules, runtime, registry=CollectorRegistry(), metrics_listen=f"{LOOPBACK}:0") as svc:
        with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as channel:
            stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
            stub.Determine(request("fire", {"deaths": 3}), timeout=10)
            with pytest.raises(grpc.RpcError):
                stub.Determine(request("fire", {"deaths": -1}), timeout=10)
        page = scrape(svc.metrics_port)
        supervisor = Supervisor(make_config(rules, workers=2, listen=f"{LOOPBACK}:50051"))
        page += generate_latest(supervisor.registry).decode("utf-8")
    page += incident_pages(runtime, tmp_path_factory.mktemp("monitoring-identities"))
    yield {s.name for family in text_string_to_metric_families(page) for s in family.samples}


def incident_pages(runtime: DurableRuntime, tmp: Path) -> str:
    """/metrics of a service after an incident's life (reported, escalated, an obligation overdue by
    the injected clock, a call without identity refused), and of one whose store is unreachable."""
    identities = tmp / "identities.yaml"
    token = "commander-token-0123456789"
    identities.write_text(f"callers:\n  - name: cmd\n    token: {token}\n    roles: [report, command]\n")
    who = (("authorization", f"Bearer {token}"),)
    clock = ManualClock()
    metrics_listen = f"{LOOPBACK}:0"
    with incident_service(runtime, clock, identities=str(identities), metrics_listen=metrics_listen) as svc:
        with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as channel:
            st = incident_stub(channel)
            crowd = facts(participants=80, local_forces_can_control=False)
            report = ipb.ReportRequest(incident_id="m1", type="mass_incident", facts=crowd, start_events=requested())
            st.Report(report, metadata=who, timeout=10)
            st.SetCommandLevel(ipb.SetCommandLevelRequest(incident_id="m1", level="city", by="x"), metadata=who)
            with pytest.raises(grpc.RpcError):
                st.GetIncident(ipb.GetIncidentRequest(incident_id="m1"), timeout=10)
        assert svc.clocks is not None
        clock.advance(minutes=20)
        assert svc.clocks.run_once() >= 1
        page = scrape(svc.metrics_port)
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    with incident_service(runtime, ManualClock(), store=unreachable, metrics_listen=metrics_listen) as svc:
        page += scrape(svc.metrics_port)
    return page


def test_dashboard_and_rules_name_only_exported_metrics(exported: set[str]) -> None:
    """Every series a dashboard query or a rule selects is one the service exports, a recording rule of the file, or `up`."""
    recorded = {name for name, _ in rule_expressions() if ":" in name}
    unknown = {
        (title, name)
        for title, expr in dashboard_expressions() + rule_expressions()
        for name in metric_names(expr)
        if name not in exported | PROMETHEUS_OWN | recorded
    }
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":  # Grafana's label_values(metric, label), not PromQL
            metric = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"])
            assert metric is not None and metric.group(1) in exported, variable
    assert not unknown, f"not exported by the service: {sorted(unknown)}"
    # the dashboard stands alone: it needs no recording rule installed
    assert not {n for _, e in dashboard_expressions() for n in metric_names(e)} & recorded


def test_dashboard_shows_what_the_issue_lists() -> None:
    """The dashboard has panels for serving, versions, decisions, rule hits, error codes, both latencies and reloads."""
    exprs = " ".join(e for _, e in dashboard_expressions())
    for name in (
        "liandong_serving",
        "liandong_ruleset_active_info",
        "liandong_decisions_total",
        "liandong_rule_hits_total",
        "liandong_rpc_requests_total",
        "liandong_rpc_duration_seconds_bucket",
        "liandong_evaluation_duration_seconds_bucket",
        "liandong_reloads_total",
    ):
        assert name in exprs, name
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def test_dashboard_and_rules_cover_incidents() -> None:
    """The Incidents row shows every incident metric, and the incident alerts (overdue, timer lag, store errors) exist."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = [p["title"] for p in board["panels"]]
    row = titles.index("Incidents")
    exprs = " ".join(t["expr"] for p in board["panels"][row + 1 :] for t in p.get("targets", []))
    for name in (
        "liandong_incidents_open",
        "liandong_incident_level_changes_total",
        "liandong_obligations_overdue_total",
        "liandong_obligations_pending",
        "liandong_timer_lag_seconds_bucket",
        "liandong_store_errors_total",
        "liandong_incident_denied_total",
    ):
        assert name in exprs, name
    alerts = {name for name, _ in rule_expressions()}
    assert {"LiandongObligationsOverdue", "LiandongTimerLagHigh", "LiandongStoreErrors"} <= alerts


def test_every_dashboard_and_rule_expression_parses(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule) and the rules file; a broken expression is refused."""
    promtool = promtool_or_skip()
    records = [{"record": f"dashboard:query_{i}", "expr": e} for i, (_, e) in enumerate(dashboard_expressions())]
    as_rules = tmp_path / "dashboard-rules.yml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}), encoding="utf-8")
    for path in (as_rules, RULES_FILE):
        run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (a"}]}]}))
    run = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "parse error" in (run.stdout + run.stderr)


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """Every deploy/prometheus/*_test.yml passes `promtool test rules` (series in, alerts out)."""
    promtool = promtool_or_skip()
    tests = sorted(PROMETHEUS_DIR.glob("*_test.yml"))
    assert tests
    run = subprocess.run(
        [promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR
    )
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_every_alert_has_a_runbook_line() -> None:
    """Each alert's runbook annotation points at a heading of docs/operations.md that exists."""
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in operations.splitlines()
        if line.startswith("#")
    }
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 6
    for rule in alerts:
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{rule['alert'].lower()}" and runbook.split("#")[1] in anchors, rule
