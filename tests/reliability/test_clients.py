"""Independent clients: a Node.js program (@grpc/grpc-js + @grpc/proto-loader) drives the service, and a
real Prometheus server (Debian's `prometheus`) scrapes its metrics; `promtool check metrics` lints them.

Both need tools from outside PyPI, installed by tests/reliability/setup_tools.sh (run by `make test`)
where the npm registry and apt-get are reachable; without them these tests skip and say why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.rpc import status_pb2

from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import ROOT
from support.messages import request
from support.metrics import scrape
from support.processes import free_port, wait_until
from support.rules import copy_bundled
from support.servers import LOOPBACK, running

HERE = Path(__file__).resolve().parent
ALERT_RULES = ROOT / "deploy" / "prometheus" / "liandong-rules.yml"

NODE_DIR = HERE / "node"
GOOGLE_PROTOS = Path(status_pb2.__file__).resolve().parents[2]  # site-packages: google/rpc/*.proto
SETUP = "tests/reliability/setup_tools.sh (run by `make test`)"


@pytest.fixture()
def fire_server(tmp_path: Path, runtime: DurableRuntime) -> Iterator[Service]:
    """The bundled fire-linkage rule set served in process, metrics on a free loopback port."""
    copy_bundled(tmp_path / "rules", "fire-linkage")
    with running(tmp_path / "rules", runtime, metrics_listen=f"{LOOPBACK}:0") as svc:
        yield svc


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the independent Node.js client cannot run")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader", "@grpc/reflection", "grpc-health-check", "protobufjs"):
        if not (NODE_DIR / "node_modules" / package / "package.json").exists():
            pytest.skip(
                f"npm package {package} is not installed in tests/reliability/node (needs the npm registry; {SETUP})"
            )
    return node


def test_nodejs_client_determines_reads_errors_checks_health_and_lists_services(fire_server: Service) -> None:
    """A Node.js @grpc/grpc-js client gets an answer, an error with its BadRequest details, a refusal for facts sent as a plain object, SERVING health and the reflected service list."""
    node = node_or_skip()
    run = subprocess.run(
        [node, str(NODE_DIR / "client.js"), f"{LOOPBACK}:{fire_server.port}", str(ROOT / "proto"), str(GOOGLE_PROTOS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=NODE_DIR,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    book = fire_server.state.book
    assert book is not None
    document = book.versions("fire-linkage")[-1].document
    answer = seen["determine"]
    assert (answer["ruleset"], answer["version"], answer["content_hash"]) == (
        "fire-linkage",
        document.version,
        document.content_hash,
    )
    assert answer["level"] == "III" and answer["lead"] == "county_hq" and answer["incident_id"] == "node-1"
    assert "emergency_bureau" in answer["units"] and "grade-III" in answer["matched_rules"] and answer["decision_id"]
    error = seen["error"]
    assert error["name"] == "INVALID_ARGUMENT" and error["details"]["code"] == 3
    assert {(v["field"], v["reason"]) for v in error["details"]["violations"]} == {
        ("incident.facts.deaths", "out_of_range"),
        ("incident.facts.deathz", "unknown_field"),
    }
    plain = seen["plain_object"]  # facts {deaths: 30} as a plain object: dropped by proto-loader, so refused
    assert plain["name"] == "INVALID_ARGUMENT" and "no facts were sent" in plain["message"]
    assert plain["details"]["violations"] == [{"field": "incident.facts", "reason": "empty_report"}]
    assert seen["health"] == {"(server)": "SERVING", "liandong.v1.ResponseService": "SERVING"}
    assert {"liandong.v1.ResponseService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(
        seen["reflection"]
    )


def tool_or_skip(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package `prometheus`; {SETUP} installs it where apt-get works)")
    return path


def make_traffic(svc: Service, answered: int, refused: int) -> None:
    with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as channel:
        stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
        for i in range(answered):
            stub.Determine(request("fire", {"deaths": i}), timeout=10)
        for _ in range(refused):
            with pytest.raises(grpc.RpcError):
                stub.Determine(request("fire", {"deaths": -1}), timeout=10)


def test_promtool_accepts_the_exposition(fire_server: Service) -> None:
    """`promtool check metrics` finds no problem in the /metrics page after answered and refused calls."""
    promtool = tool_or_skip("promtool")
    make_traffic(fire_server, answered=3, refused=1)
    page = scrape(fire_server.metrics_port)
    assert "liandong_decisions_total" in page
    run = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "" and run.stderr.strip() == "", run.stdout + run.stderr


def query(port: int, expression: str) -> list[dict[str, object]]:
    url = f"http://{LOOPBACK}:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
    except OSError:
        return []
    result: list[dict[str, object]] = body["data"]["result"] if body.get("status") == "success" else []
    return result


def value(port: int, expression: str) -> float | None:
    result = query(port, expression)
    return float(result[0]["value"][1]) if len(result) == 1 else None  # type: ignore[index]


def test_prometheus_scrapes_the_service_and_answers_queries(fire_server: Service, tmp_path: Path) -> None:
    """A real Prometheus server scrapes /metrics with the shipped rules loaded: queries give the calls made, a rate and a p99, the rules load and none fires."""
    prometheus = tool_or_skip("prometheus")
    make_traffic(fire_server, answered=7, refused=2)
    web_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ALERT_RULES}']\n"
        "scrape_configs:\n"
        f"  - job_name: liandong\n    static_configs: [{{targets: ['{LOOPBACK}:{fire_server.metrics_port}']}}]\n",
        encoding="utf-8",
    )
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{web_port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        try:
            started = time.monotonic()
            scraped = wait_until(
                lambda: value(web_port, 'sum(liandong_decisions_total{job="liandong",ruleset="fire-linkage"})') == 7,
                90,
                interval=0.5,
            )
            waited = time.monotonic() - started
            up = value(web_port, 'up{job="liandong"}')
            refused = value(web_port, 'liandong_rpc_requests_total{method="Determine",code="INVALID_ARGUMENT"}')
            active = query(web_port, "liandong_ruleset_active_info")
            latency = value(
                web_port,
                'histogram_quantile(0.5, sum by (le) (liandong_evaluation_duration_seconds_bucket{ruleset="fire-linkage"}))',
            )
            # Traffic while Prometheus scrapes, so that rates over the last minute are above 0.
            make_traffic(fire_server, answered=5, refused=0)
            rate = 'sum(rate(liandong_decisions_total{job="liandong"}[1m]))'
            rated = wait_until(lambda: (value(web_port, rate) or 0) > 0, 60, interval=0.5)
            p99 = value(
                web_port,
                'histogram_quantile(0.99, sum by (le) (rate(liandong_rpc_duration_seconds_bucket{method="Determine"}[1m])))',
            )
            recorded = wait_until(lambda: query(web_port, "liandong:rpc_requests:rate5m") != [], 30, interval=0.5)
            loaded = loaded_rules(web_port)
            firing = query(web_port, 'ALERTS{alertstate="firing"}')
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert scraped, log.read_text(errors="replace")[-3000:]
    print(f"\nprometheus figures: first query over scraped series answered after {waited:.1f}s")
    assert up == 1 and refused == 2
    assert [(r["metric"]["ruleset"], r["metric"]["version"]) for r in active] == [("fire-linkage", "2024.1")]  # type: ignore[index]
    assert latency is not None and 0 < latency < 1
    assert rated and p99 is not None and 0 < p99 <= 1
    assert recorded  # a recording rule of deploy/prometheus/liandong-rules.yml evaluated over the scraped series
    assert loaded == shipped_rules()
    assert firing == []  # a healthy service fires none of them


def loaded_rules(port: int) -> dict[str, list[str]]:
    """The rule groups a Prometheus server has loaded, with their rules' names, from its HTTP API."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/api/v1/rules", timeout=5) as response:
        body = json.loads(response.read())
    return {g["name"]: [r["name"] for r in g["rules"]] for g in body["data"]["groups"]}


def shipped_rules() -> dict[str, list[str]]:
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    return {g["name"]: [r.get("alert") or r["record"] for r in g["rules"]] for g in groups}
