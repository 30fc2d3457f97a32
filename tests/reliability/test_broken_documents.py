"""The broken-document corpus (tests/data/broken/index.yaml): every broken rules directory is refused
with a located, readable problem; at start-up the service does not serve, on reload the old set does."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from liandong.document.load import load_tree
from liandong.document.source import MAX_DOCUMENT_BYTES
from liandong.engine.runtime import DurableRuntime
from liandong.errors import RuleDocumentInvalid
from liandong.server.app import Service, StartupError
from liandong.v1 import admin_pb2, admin_pb2_grpc
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import DEMO_DIR, TESTS
from support.messages import request
from support.processes import Serve
from support.rules import copy_demo, rules_tree
from support.servers import ADMIN_TOKEN, LOOPBACK, make_config

BROKEN = TESTS / "data" / "broken"
CASES: list[dict[str, object]] = yaml.safe_load((BROKEN / "index.yaml").read_text(encoding="utf-8"))["cases"]
IDS = [str(c["note"]) for c in CASES]
DEFAULT_PATH = "demo/2024.1.yaml"


def lay_out(case: dict[str, object], rules: Path, outside: Path) -> None:
    """Turn a rules directory holding the valid demo rule set into the case's broken one."""
    good = (DEMO_DIR / "2024.1.yaml").read_bytes()
    setup = case.get("setup")
    if setup == "huge":
        (rules / DEFAULT_PATH).write_bytes(good + b"# " + b"x" * MAX_DOCUMENT_BYTES + b"\n")
    elif setup == "symlink-file-outside":
        outside.mkdir(parents=True, exist_ok=True)
        (outside / "2024.1.yaml").write_bytes(good)  # a valid document: its place is what is wrong
        (rules / DEFAULT_PATH).unlink()
        (rules / DEFAULT_PATH).symlink_to(outside / "2024.1.yaml")
    elif setup == "symlink-dir-outside":
        shutil.copytree(rules / "demo", outside / "demo")
        shutil.rmtree(rules / "demo")
        (rules / "demo").symlink_to(outside / "demo", target_is_directory=True)
    else:
        assert setup is None, f"unknown setup {setup!r}"
        target = rules / str(case.get("path", DEFAULT_PATH))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BROKEN / str(case["file"]), target)
    if not case.get("keep_good", False) and str(case.get("path", DEFAULT_PATH)) != DEFAULT_PATH:
        (rules / DEFAULT_PATH).unlink()


def restore(rules: Path) -> None:
    """Back to exactly the valid demo rule set."""
    for child in rules.iterdir():
        if child.is_symlink() or child.is_file():
            child.unlink()
        else:
            shutil.rmtree(child)
    copy_demo(rules)


def broken_tree(tmp_path: Path, case: dict[str, object]) -> Path:
    rules = rules_tree(tmp_path / "rules", "demo")
    lay_out(case, rules, tmp_path / "outside")
    return rules


def test_corpus_covers_the_issue() -> None:
    """The corpus holds every kind of broken document the issue names, and every file is indexed."""
    notes = " ".join(IDS)
    for kind in (
        "syntax error",
        "alias bomb",
        "huge file",
        "wrong type",
        "cyclic reference",
        "dangling reference",
        "duplicate",
        "symlinked from outside",
        "non-UTF-8",
        "deep nesting",
    ):
        assert kind in notes, kind
    indexed = {str(c["file"]) for c in CASES if "file" in c}
    on_disk = {p.name for p in BROKEN.glob("*.yaml") if p.name != "index.yaml"}
    assert indexed == on_disk
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_problem_is_located_and_readable(case: dict[str, object], tmp_path: Path) -> None:
    """Loading the broken directory lists the expected problem as path:line:column: message."""
    rules = broken_tree(tmp_path, case)
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_tree(rules)
    problems = caught.value.problems
    found = [p for p in problems if str(case["want"]) in p.message and p.line == case["line"]]
    assert found, f"wanted {case['want']!r} at line {case['line']}, got:\n" + "\n".join(str(p) for p in problems)
    for p in problems:
        assert str(p).startswith(f"{p.path}:{p.line}:{p.column}: ")
        assert Path(p.path).resolve().is_relative_to(rules.resolve()) or Path(p.path).is_relative_to(rules), (
            p.path
        )  # names a place in the rules directory
        assert "Traceback" not in p.message and "\n" not in p.message


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_startup_refuses_to_serve(case: dict[str, object], tmp_path: Path, runtime: DurableRuntime) -> None:
    """At start-up the broken directory is fatal: StartupError with the located problem, never SERVING."""
    rules = broken_tree(tmp_path, case)
    svc = Service(make_config(rules), registry=CollectorRegistry(), runtime=runtime)
    try:
        with pytest.raises(StartupError) as caught:
            svc.start()
    finally:
        svc.stop(0)
    assert str(case["want"]) in str(caught.value)
    assert svc.state.book is None
    assert svc.registry.get_sample_value("liandong_serving") == 0
    assert svc.registry.get_sample_value("liandong_reloads_total", {"outcome": "failure", "trigger": "startup"}) == 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> Iterator[Service]:
    """One in-process service on the valid demo rule set, with the admin service on."""
    root = tmp_path_factory.mktemp("served")
    svc = Service(
        make_config(rules_tree(root / "rules", "demo"), admin_token=ADMIN_TOKEN),
        registry=CollectorRegistry(),
        runtime=runtime,
    )
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reload_keeps_the_old_version(case: dict[str, object], served: Service, tmp_path: Path) -> None:
    """An admin Reload of the broken directory fails with the located problem, and the old set keeps answering."""
    rules = served.config.rules_dir
    book = served.state.book
    assert book is not None
    old_hash = book.versions("demo")[-1].document.content_hash
    lay_out(case, rules, tmp_path / "outside")
    try:
        with grpc.insecure_channel(f"{LOOPBACK}:{served.port}") as channel:
            reply = admin_pb2_grpc.RulesAdminServiceStub(channel).Reload(
                admin_pb2.ReloadRequest(), metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")], timeout=30
            )  # type: ignore[no-untyped-call]
            answer = pb_grpc.ResponseServiceStub(channel).Determine(request("demo", {"deaths": 3}), timeout=10)  # type: ignore[no-untyped-call]
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)  # type: ignore[no-untyped-call]
    finally:
        restore(rules)
    assert not reply.ok
    assert any(str(case["want"]) in e and f":{case['line']}:" in e for e in reply.errors), list(reply.errors)
    assert [s.id for s in reply.serving] == ["demo"] and reply.serving[0].versions[0].content_hash == old_hash
    assert served.state.book is book  # the very same snapshot: nothing half-loaded was swapped in
    assert (answer.content_hash, answer.version, answer.level.code) == (old_hash, "2024.1", "III")
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_serve_exits_1_on_a_broken_directory(tmp_path: Path) -> None:
    """`liandong serve` on a broken directory exits 1 and logs the located problem; it never listens for calls."""
    case = next(c for c in CASES if c.get("file") == "dangling-unit.yaml")
    rules = broken_tree(tmp_path, case)
    server = Serve(tmp_path, "--rules-dir", str(rules))
    try:
        assert server.proc.wait(timeout=60) == 1
    finally:
        server.stop()
    failed = server.event("startup_failed")
    assert failed is not None, server.log()
    assert f"2024.1.yaml:{case['line']}:" in str(failed["error"]) and str(case["want"]) in str(failed["error"])
    assert server.event("rules_reloaded") is None


def test_sighup_reload_of_a_broken_directory_keeps_serving(tmp_path: Path) -> None:
    """SIGHUP with a broken document logs rules_reload_failed with the located problem and keeps answering from the old set."""
    case = next(c for c in CASES if c.get("file") == "deep-nesting.yaml")
    rules = rules_tree(tmp_path / "rules", "demo")
    server = Serve(tmp_path, "--rules-dir", str(rules))
    try:
        server.wait_serving()
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
            before = stub.Determine(request("demo", {"deaths": 10}), timeout=10)
            lay_out(case, rules, tmp_path / "outside")
            server.send_signal(signal.SIGHUP)
            failed = server.wait_event("rules_reload_failed", trigger="signal")
            after = stub.Determine(request("demo", {"deaths": 10}), timeout=10)
    finally:
        server.stop()
    assert failed["kept_serving"] is True
    assert any(str(case["want"]) in str(e) for e in failed["errors"])  # type: ignore[attr-defined]
    assert (after.content_hash, after.level.code) == (before.content_hash, "II")


def test_validate_prints_every_problem_located(tmp_path: Path) -> None:
    """`liandong rules validate` on a broken directory exits 1 and prints path:line:column: message."""
    case = next(c for c in CASES if c.get("file") == "syntax-unterminated-quote.yaml")
    rules = broken_tree(tmp_path, case)
    run = subprocess.run(
        [sys.executable, "-m", "liandong.cli", "rules", "validate", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 1
    assert (
        f"2024.1.yaml:{case['line']}:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at line 3)"
        in run.stderr
    )
    assert "Traceback" not in run.stderr
