"""Helpers for the end-to-end tests of the gRPC service: real servers on 127.0.0.1, free ports only.

Every server here binds 127.0.0.1 with port 0 (the kernel picks a free one); subprocess servers
report the port they got in their `listening` log line. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conftest import DATA, ROOT
from liandong.engine.runtime import DurableRuntime
from liandong.server import config
from liandong.server.app import Service
from liandong.v1 import admin_pb2_grpc
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc

LOOPBACK = "127.0.0.1"
BUNDLED_RULES = ROOT / "rules"
DEMO_DIR = DATA / "rules" / "demo"
ADMIN_TOKEN = "s3cret-admin-token-0123456789"  # at least 16 characters, as config requires
RESPONSE_SERVICE = "liandong.v1.ResponseService"
ADMIN_SERVICE = "liandong.v1.RulesAdminService"
HEALTH_SERVICE = "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# -- rule directories ------------------------------------------------------------------------------
def copy_demo(dest_root: Path, name: str = "demo") -> Path:
    """Copy tests/data/rules/demo under dest_root/NAME, renaming the rule set when NAME differs."""
    copied = dest_root / name
    shutil.copytree(DEMO_DIR, copied)
    if name != "demo":
        for path in copied.glob("*.yaml"):
            path.write_text(path.read_text(encoding="utf-8").replace("ruleset: demo\n", f"ruleset: {name}\n"), encoding="utf-8")
    return copied


def copy_bundled(dest_root: Path, name: str) -> Path:
    """Copy one bundled rule set (rules/NAME) under dest_root/NAME."""
    copied = dest_root / name
    shutil.copytree(BUNDLED_RULES / name, copied)
    return copied


def edit(path: Path, old: str, new: str) -> None:
    """Replace exactly one occurrence of old in a file (the test data must contain it)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path} should contain {old!r} exactly once"
    path.write_text(text.replace(old, new), encoding="utf-8")


# A rule set whose only rule needs a death: an incident without one gets "no rule applies".
QUIET_DOCUMENT = """\
ruleset: quiet
version: "2024.1"
title: 无事预案
source: {plan: 无事预案, location: tests}
effective_from: 2024-01-01
incident_types: [quiet]
boundary: civil-code
inputs:
  deaths: {type: integer, min: 0, default: 0, meaning: 死亡人数}
levels:
  - {code: I, name: 一级, rank: 1}
units:
  - {id: office, name: 办公室, duties: 值守, citation: 第一条}
groups: []
obligations: []
rules:
  - id: any-death
    title: 有人死亡
    citation: 第二条
    when: {deaths: {gt: 0}}
    then: {level: I, lead: office}
"""


def write_quiet(dest_root: Path) -> Path:
    """Write the `quiet` rule set (type quiet) under dest_root/quiet."""
    path = dest_root / "quiet" / "2024.1.yaml"
    path.parent.mkdir()
    path.write_text(QUIET_DOCUMENT, encoding="utf-8")
    return path


def canonical_hash(path: Path) -> str:
    """sha256 of a document's canonical JSON form, computed independently of the service."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- in-process servers ----------------------------------------------------------------------------
def make_config(rules_dir: Path, **overrides: object) -> config.Config:
    flags: dict[str, object] = {"listen": f"{LOOPBACK}:0", "metrics_listen": f"{LOOPBACK}:0", "rules_dir": str(rules_dir)}
    flags.update(overrides)
    return config.load(flags, env={})


@contextlib.contextmanager
def running(rules_dir: Path, runtime: DurableRuntime, registry: CollectorRegistry | None = None, **overrides: object) -> Iterator[Service]:
    """A started Service on a free loopback port; stopped (grace 0) when the block ends."""
    svc = Service(make_config(rules_dir, **overrides), registry=registry if registry is not None else CollectorRegistry(), runtime=runtime)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(0)


def target(svc: Service) -> str:
    return f"{LOOPBACK}:{svc.port}"


@contextlib.contextmanager
def channel(address: str) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(address)
    try:
        yield ch
    finally:
        ch.close()


def stubs(ch: grpc.Channel) -> tuple[pb_grpc.ResponseServiceStub, admin_pb2_grpc.RulesAdminServiceStub, health_pb2_grpc.HealthStub]:
    return pb_grpc.ResponseServiceStub(ch), admin_pb2_grpc.RulesAdminServiceStub(ch), health_pb2_grpc.HealthStub(ch)  # type: ignore[no-untyped-call]


def request(incident_type: str, facts: Mapping[str, object] | None = None, *, incident_id: str = "", ruleset: str = "", version: str = "", explain: bool = False) -> pb.DetermineRequest:
    req = pb.DetermineRequest(ruleset=ruleset, version=version, explain=explain)
    req.incident.id = incident_id
    req.incident.type = incident_type
    req.incident.facts.update(dict(facts or {}))
    return req


def batches(requests: Iterable[pb.DetermineRequest], size: int = 1) -> Iterator[pb.DetermineStreamRequest]:
    """DetermineStream messages of up to `size` requests, built lazily: each is handed to grpc once
    full or once the requests run out, so a generator that waits between requests (size 1) holds
    the stream open with its earlier requests already sent."""
    batch: list[pb.DetermineRequest] = []
    for req in requests:
        batch.append(req)
        if len(batch) >= size:
            yield pb.DetermineStreamRequest(requests=batch)
            batch = []
    if batch:
        yield pb.DetermineStreamRequest(requests=batch)


def answers_of(responses: Iterable[pb.DetermineStreamResponse]) -> Iterator[pb.Determination]:
    """The answers of DetermineStream's response messages, one by one, as the messages arrive."""
    for response in responses:
        yield from response.determinations


def health_status(ch: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(ch)  # type: ignore[no-untyped-call]
    response: health_pb2.HealthCheckResponse = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)


# -- google.rpc status details -------------------------------------------------------------------
@dataclass
class Details:
    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str, str]] = field(default_factory=list)  # (field, description, reason)
    preconditions: list[str] = field(default_factory=list)  # subjects
    resources: list[str] = field(default_factory=list)  # resource names
    kinds: list[str] = field(default_factory=list)  # type names of every detail


def details(error: grpc.RpcError) -> Details:
    """The code, message and unpacked google.rpc details of a failed call."""
    out = Details(error.code(), error.details() or "")
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        out.kinds.append(detail.TypeName())
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.violations.extend((v.field, v.description, v.reason) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            out.preconditions.extend(v.subject for v in failure.violations)
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            out.resources.append(info.resource_name)
    return out


# -- metrics ---------------------------------------------------------------------------------------
def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page, keyed by (sample name, labels)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(page: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return page.get((name, frozenset(labels.items())))


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A registry sample, 0 when it was never observed."""
    got = registry.get_sample_value(name, labels)
    return float(got) if got is not None else 0.0


# -- `liandong serve` as a subprocess --------------------------------------------------------------
def log_events(text: str) -> list[dict[str, object]]:
    """The JSON log lines of a `liandong serve` process, skipping anything else it printed."""
    out = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def find_event(events: list[dict[str, object]], name: str, **match: object) -> dict[str, object] | None:
    """The first event called `name` whose fields include `match`."""
    return next((e for e in events if e.get("event") == name and all(e.get(k) == v for k, v in match.items())), None)


def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    """Poll predicate() until it is true or timeout seconds pass; returns its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ServeProcess:
    """`liandong serve` in a subprocess with JSON logs in a file; always stop() it in a finally."""

    def __init__(self, workdir: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.log_path = workdir / "serve.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LIANDONG_")}
        environ["PYTHONUNBUFFERED"] = "1"
        environ.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "liandong.cli", "serve", "--listen", f"{LOOPBACK}:0", "--metrics-listen", "", "--log-format", "json", *args]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir, env=environ)
        self.port = 0

    def events(self) -> list[dict[str, object]]:
        return log_events(self.log_path.read_text(encoding="utf-8", errors="replace"))

    def event(self, name: str, **match: object) -> dict[str, object] | None:
        return find_event(self.events(), name, **match)

    def wait_listening(self, timeout: float = 20.0) -> int:
        """The port from the `listening` line, once health says SERVING."""
        assert wait_until(lambda: self.event("listening") is not None or self.proc.poll() is not None, timeout), self.log()
        listening = self.event("listening")
        assert listening is not None, f"server exited with {self.proc.poll()}:\n{self.log()}"
        self.port = int(listening["port"])  # type: ignore[call-overload]
        assert wait_until(lambda: self.event("rules_reloaded", trigger="startup") is not None or self.proc.poll() is not None, timeout), self.log()
        assert self.proc.poll() is None, self.log()
        return self.port

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def handles(self, sig: signal.Signals) -> bool:
        """Whether the process has installed a handler for sig (Linux: SigCgt in /proc/PID/status)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text(encoding="ascii")
        except OSError:
            return False
        caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
        return bool(int(caught, 16) & (1 << (int(sig) - 1)))

    def wait_handles(self, sig: signal.Signals, timeout: float = 10.0) -> None:
        """Wait until the process handles sig, so that sending it cannot kill it by the default action."""
        if not Path("/proc/self/status").exists():
            return  # not Linux: the listening line is the best we have
        assert wait_until(lambda: self.handles(sig) or self.proc.poll() is not None, timeout), self.log()
        assert self.proc.poll() is None, self.log()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


# -- fixtures for modules that define `rules_dir` (registered in tests/conftest.py) ---------------
@pytest.fixture(scope="module")
def server(rules_dir: Path, runtime: DurableRuntime) -> Iterator[Service]:
    """A service on a free loopback port over the module's rules directory, without metrics."""
    with running(rules_dir, runtime, metrics_listen="") as svc:
        yield svc


@pytest.fixture(scope="module")
def stub(server: Service) -> Iterator[pb_grpc.ResponseServiceStub]:
    """A raw ResponseService stub on that service."""
    with channel(target(server)) as ch:
        yield pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
