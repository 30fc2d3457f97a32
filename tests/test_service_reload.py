"""End to end: reloading rules while serving (admin call, SIGHUP, file watch), and the admin service's token."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from liandong.client import Client
from liandong.engine.runtime import DurableRuntime
from liandong.server import reload
from liandong.server.app import Service
from liandong.server.reload import ReloadOutcome
from liandong.v1 import admin_pb2 as apb
from liandong.v1 import admin_pb2_grpc as apb_grpc
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import load_cases
from support.messages import answers_of, batches, request
from support.metrics import sample
from support.processes import Serve, wait_until
from support.rules import canonical_hash, copy_demo, edit
from support.servers import ADMIN_TOKEN, channel, make_config, running, target

AUTH = [("authorization", f"Bearer {ADMIN_TOKEN}")]
BAD_RELOADS = load_cases("service_bad_reloads.yaml")
AUTH_CASES = load_cases("service_admin_auth.yaml")


@dataclass
class Served:
    svc: Service
    rules: Path
    registry: CollectorRegistry
    admin: apb_grpc.RulesAdminServiceStub
    stub: pb_grpc.ResponseServiceStub

    @property
    def document(self) -> Path:
        return self.rules / "demo" / "2024.1.yaml"

    @property
    def fixtures(self) -> Path:
        return self.rules / "demo" / "2024.1.fixtures.yaml"

    def served_hash(self) -> str:
        return str(self.stub.Determine(request("demo", {"deaths": 3}), timeout=10).content_hash)

    def reload(self) -> apb.ReloadStatus:
        status: apb.ReloadStatus = self.admin.Reload(apb.ReloadRequest(), metadata=AUTH, timeout=30)
        return status


@pytest.fixture()
def served(tmp_path: Path, runtime: DurableRuntime) -> Iterator[Served]:
    """A demo copy in tmp_path, served with the admin service on."""
    rules = tmp_path / "rules"
    rules.mkdir()
    copy_demo(rules)
    registry = CollectorRegistry()
    with (
        running(rules, runtime, registry, metrics_listen="", admin_token=ADMIN_TOKEN) as svc,
        channel(target(svc)) as ch,
    ):
        yield Served(svc, rules, registry, apb_grpc.RulesAdminServiceStub(ch), pb_grpc.ResponseServiceStub(ch))  # type: ignore[no-untyped-call]


def retitle(path: Path, title: str) -> str:
    """Give the document a new title (fixtures still hold) and return its new content hash."""
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"(?m)^title: .*$", f"title: {title}", text, count=1), encoding="utf-8")
    return canonical_hash(path)


# -- admin reload ------------------------------------------------------------------------------------------
def test_good_reload_serves_the_new_document(served: Served) -> None:
    """An admin Reload of a changed, fixture-consistent document swaps it in: answers, listings and metrics carry the new content hash."""
    old = canonical_hash(served.document)
    assert served.served_hash() == old
    before = served.svc.state.last_success_at
    assert before is not None
    new = retitle(served.document, "测试预案(修订)")
    assert new != old
    status = served.reload()
    assert status.ok and status.trigger == "admin" and list(status.errors) == []
    assert status.fixtures_passed == 6 and status.fixtures_failed == 0
    assert status.finished_at.ToDatetime() >= status.started_at.ToDatetime()
    assert status.last_success_at.ToDatetime().timestamp() > before.timestamp() - 1
    ((summary),) = [s for s in status.serving if s.id == "demo"]
    assert summary.versions[0].content_hash == new and summary.versions[0].title == "测试预案(修订)"
    assert served.served_hash() == new
    assert (
        served.admin.GetReloadStatus(apb.GetReloadStatusRequest(), metadata=AUTH, timeout=10)
        .serving[0]
        .versions[0]
        .content_hash
        == new
    )
    assert sample(served.registry, "liandong_reloads_total", outcome="success", trigger="admin") == 1
    assert (
        sample(served.registry, "liandong_ruleset_active_info", ruleset="demo", version="2024.1", content_hash=new[:16])
        == 1
    )
    assert (
        served.registry.get_sample_value(
            "liandong_ruleset_active_info", {"ruleset": "demo", "version": "2024.1", "content_hash": old[:16]}
        )
        is None
    )


@pytest.mark.parametrize("case", BAD_RELOADS, ids=[c["note"] for c in BAD_RELOADS])
def test_bad_reload_keeps_the_old_version_serving(served: Served, case: dict[str, Any]) -> None:
    """A reload that fails validation or fixtures returns ok=false with located errors; the old version keeps serving and the failure is counted."""
    old = canonical_hash(served.document)
    last_success = served.admin.GetReloadStatus(apb.GetReloadStatusRequest(), metadata=AUTH, timeout=10).last_success_at
    edit(served.document if case["file"] == "document" else served.fixtures, case["old"], case["new"])
    with structlog.testing.capture_logs() as logs:
        status = served.reload()
    want = case["want"]
    assert not status.ok and status.trigger == "admin"
    joined = "\n".join(status.errors)
    for words in want["errors"]:
        assert words in joined, joined
    assert any(want["located"] in line for line in status.errors), joined
    assert all(re.search(r"\.yaml:\d+:", line) for line in status.errors), joined
    if "fixtures_failed" in want:
        assert (status.fixtures_passed, status.fixtures_failed) == (want["fixtures_passed"], want["fixtures_failed"])
    # Still serving what was there before, and saying so.
    assert served.served_hash() == old
    assert [v.content_hash for s in status.serving for v in s.versions] == [old]
    again = served.admin.GetReloadStatus(apb.GetReloadStatusRequest(), metadata=AUTH, timeout=10)
    assert not again.ok and list(again.errors) == list(status.errors)
    assert again.last_success_at == last_success
    assert sample(served.registry, "liandong_reloads_total", outcome="failure", trigger="admin") == 1
    assert sample(served.registry, "liandong_reloads_total", outcome="success", trigger="admin") == 0
    assert (
        sample(served.registry, "liandong_ruleset_active_info", ruleset="demo", version="2024.1", content_hash=old[:16])
        == 1
    )
    (failed,) = [e for e in logs if e["event"] == "rules_reload_failed"]
    assert failed["log_level"] == "error" and failed["kept_serving"] is True and failed["errors"]


def test_reload_fixes_after_a_failure(served: Served) -> None:
    """After a failed reload, fixing the document and reloading again serves the fixed version."""
    edit(served.document, "title: 测试预案\n", "title: [测试预案\n")
    assert not served.reload().ok
    edit(served.document, "title: [测试预案\n", "title: 测试预案(修好了)\n")
    status = served.reload()
    assert status.ok and served.served_hash() == canonical_hash(served.document)
    assert sample(served.registry, "liandong_reloads_total", outcome="failure", trigger="admin") == 1
    assert sample(served.registry, "liandong_reloads_total", outcome="success", trigger="admin") == 1


def test_reloads_during_calls_cause_no_errors(served: Served) -> None:
    """Determine calls made while the rules are reloaded several times all succeed, each on a whole version, and the newest version serves afterwards."""
    known = {canonical_hash(served.document)}
    seen: list[tuple[str, str]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def caller() -> None:
        # Calls until the test has seen answers after the last reload: bounded in count and time, but
        # not so tightly that a fast caller runs out before slow reloads end.
        deadline = time.monotonic() + 60
        with Client(target(served.svc), timeout=10, retries=0) as client:
            for n in range(50_000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                deaths = n % 12
                try:
                    det = client.determine("demo", {"deaths": deaths})
                    seen.append((det.content_hash, det.level.code))
                    if det.level.code != ("IV" if deaths < 3 else "III" if deaths < 10 else "II"):
                        failures.append(AssertionError(f"deaths {deaths}: level {det.level.code}"))
                except BaseException as exc:  # noqa: BLE001 - collected, asserted below
                    failures.append(exc)

    thread = threading.Thread(target=caller, name="caller")
    thread.start()
    try:
        assert wait_until(lambda: len(seen) >= 5, 5)
        for n in range(4):
            known.add(retitle(served.document, f"测试预案 第{n}版"))
            status = served.reload()
            assert status.ok, list(status.errors)
        mark = len(seen)
        assert wait_until(lambda: len(seen) >= mark + 3 or not thread.is_alive(), 5)
    finally:
        stop.set()
        thread.join(15)
    assert failures == []
    assert len(seen) >= mark + 3, "the caller stopped before answers after the last reload"
    assert {h for h, _ in seen} <= known
    assert {h for h, _ in seen[mark + 1 :]} == {canonical_hash(served.document)}
    assert sample(served.registry, "liandong_reloads_total", outcome="success", trigger="admin") == 4
    assert sample(served.registry, "liandong_rpc_requests_total", method="Determine", code="OK") == len(seen)


def test_in_flight_stream_finishes_on_the_version_it_started_with(served: Served) -> None:
    """A DetermineStream open across a reload answers every request from the version it started with; new calls get the new one."""
    old = canonical_hash(served.document)
    release = threading.Event()

    def incidents() -> Iterator[pb.DetermineRequest]:
        for n in range(3):
            yield request("demo", {"deaths": n}, incident_id=f"before{n}")
        release.wait(15)
        for n in range(3):
            yield request("demo", {"deaths": n}, incident_id=f"after{n}")

    answers: list[tuple[str, str]] = []
    call = served.stub.DetermineStream(batches(incidents()), timeout=30)  # one request per message
    consumer = threading.Thread(
        target=lambda: answers.extend((a.incident_id, a.content_hash) for a in answers_of(call)), name="consume"
    )
    consumer.start()
    try:
        assert wait_until(lambda: len(answers) == 3, 10)
        new = retitle(served.document, "测试预案(新)")
        assert served.reload().ok
        assert served.served_hash() == new
    finally:
        release.set()
        consumer.join(15)
    assert [i for i, _ in answers] == ["before0", "before1", "before2", "after0", "after1", "after2"]
    assert {h for _, h in answers} == {old}
    assert call.code() == grpc.StatusCode.OK


# -- other triggers -----------------------------------------------------------------------------------------------
def _watch_baseline(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set once the file watcher has taken its first stamps of the rules directory."""
    taken = threading.Event()
    real = reload.file_stamps

    def file_stamps(root: Path) -> object:
        result = real(root)
        taken.set()
        return result

    monkeypatch.setattr(reload, "file_stamps", file_stamps)
    return taken


def test_watch_reloads_changed_files(tmp_path: Path, runtime: DurableRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """With watch on, editing a document reloads it without any call; the reload status says the trigger was the watch."""
    copy_demo(tmp_path)
    registry = CollectorRegistry()
    baseline = _watch_baseline(monkeypatch)
    with (
        running(
            tmp_path, runtime, registry, metrics_listen="", admin_token=ADMIN_TOKEN, watch=True, watch_interval=0.1
        ) as svc,
        channel(target(svc)) as ch,
    ):
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        assert baseline.wait(10)
        new = retitle(tmp_path / "demo" / "2024.1.yaml", "测试预案(自动)")
        assert wait_until(lambda: stub.Determine(request("demo", {"deaths": 3}), timeout=10).content_hash == new, 10)
        status = apb_grpc.RulesAdminServiceStub(ch).GetReloadStatus(
            apb.GetReloadStatusRequest(), metadata=AUTH, timeout=10
        )  # type: ignore[no-untyped-call]
        assert status.ok and status.trigger == "watch"
        assert sample(registry, "liandong_reloads_total", outcome="success", trigger="watch") >= 1


def test_watch_picks_up_an_edit_made_during_startup(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A document edited after the startup load read it, but before the watcher started, is still reloaded by the watch."""
    copy_demo(tmp_path)
    document = tmp_path / "demo" / "2024.1.yaml"
    svc = Service(
        make_config(tmp_path, metrics_listen="", watch=True, watch_interval=0.1),
        registry=CollectorRegistry(),
        runtime=runtime,
    )
    real_reload = svc.state.reload
    edited: list[str] = []

    def reload_then_edit(trigger: str) -> ReloadOutcome:
        outcome = real_reload(trigger)
        if trigger == "startup":  # e.g. an author saving while the startup fixtures were running
            edited.append(retitle(document, "测试预案(启动时修改)"))
        return outcome

    svc.state.reload = reload_then_edit  # type: ignore[method-assign]
    svc.start()
    try:
        with channel(target(svc)) as ch:
            stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
            assert edited and stub.Determine(request("demo", {"deaths": 3}), timeout=10).content_hash != edited[0]
            assert wait_until(
                lambda: stub.Determine(request("demo", {"deaths": 3}), timeout=10).content_hash == edited[0], 3
            )
    finally:
        svc.stop(0)


def test_sighup_reloads_a_serving_process(tmp_path: Path) -> None:
    """SIGHUP makes `liandong serve` reload: a good change is served, a bad one is logged and the good one keeps serving; the token never reaches the log."""
    rules = tmp_path / "rules"
    rules.mkdir()
    copy_demo(rules)
    document = rules / "demo" / "2024.1.yaml"
    proc = Serve(tmp_path, "--rules-dir", str(rules), "--admin-token", ADMIN_TOKEN, metrics=False)
    try:
        proc.wait_serving()
        proc.wait_handles(signal.SIGHUP)
        with Client(proc.target, timeout=10) as client:
            assert client.determine("demo", {"deaths": 3}).content_hash == canonical_hash(document)
            new = retitle(document, "测试预案(信号)")
            proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: client.determine("demo", {"deaths": 3}).content_hash == new, 15), proc.log()
            assert wait_until(lambda: proc.event("rules_reloaded", trigger="signal") is not None, 15), (
                proc.log()
            )  # logged just after the swap
            edit(document, "units: [chem]", "units: [chemm]")
            proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: proc.event("rules_reload_failed", trigger="signal") is not None, 15), proc.log()
            failed = proc.event("rules_reload_failed", trigger="signal")
            assert failed is not None and "names unknown unit 'chemm'" in str(failed["errors"])
            assert client.determine("demo", {"deaths": 3}).content_hash == new
            assert proc.proc.poll() is None
        listening = proc.event("listening")
        assert listening is not None and listening["config"]["admin_token"] == "set"  # type: ignore[index]
        assert ADMIN_TOKEN not in proc.log()
    finally:
        proc.stop()


# A SIGHUP during start-up: tests/test_round2_sighup.py holds the first load until the signal is handled.


# -- the admin service's token -------------------------------------------------------------------------------------
def test_admin_service_is_off_without_a_token(tmp_path: Path, runtime: DurableRuntime) -> None:
    """Without an admin token the admin service is not served: both RPCs are UNIMPLEMENTED, even with a bearer token."""
    copy_demo(tmp_path)
    with running(tmp_path, runtime, metrics_listen="") as svc, channel(target(svc)) as ch:
        admin = apb_grpc.RulesAdminServiceStub(ch)  # type: ignore[no-untyped-call]
        for call in (
            lambda: admin.Reload(apb.ReloadRequest(), metadata=AUTH, timeout=10),
            lambda: admin.GetReloadStatus(apb.GetReloadStatusRequest(), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("case", AUTH_CASES, ids=[c["note"] for c in AUTH_CASES])
def test_admin_token(served: Served, case: dict[str, Any]) -> None:
    """Both admin RPCs accept exactly the configured bearer token: no token is UNAUTHENTICATED, a wrong one PERMISSION_DENIED, and a refused Reload reloads nothing."""
    metadata = [(k, v.replace("{token}", ADMIN_TOKEN)) for k, v in case["metadata"]]
    calls = {
        "Reload": lambda: served.admin.Reload(apb.ReloadRequest(), metadata=metadata, timeout=30),
        "GetReloadStatus": lambda: served.admin.GetReloadStatus(
            apb.GetReloadStatusRequest(), metadata=metadata, timeout=10
        ),
    }
    for name, call in calls.items():
        if case["code"] == "OK":
            assert call().ok, name
        else:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code().name == case["code"], name
            assert ADMIN_TOKEN not in (caught.value.details() or "")
    reloads = sample(served.registry, "liandong_reloads_total", outcome="success", trigger="admin")
    assert reloads == (1 if case["code"] == "OK" else 0)


def test_admin_token_never_logged(tmp_path: Path, runtime: DurableRuntime) -> None:
    """Starting with a token, refusing wrong tokens and reloading log what happened but never the token."""
    copy_demo(tmp_path)
    with structlog.testing.capture_logs() as logs:
        with running(tmp_path, runtime, metrics_listen="", admin_token=ADMIN_TOKEN) as svc, channel(target(svc)) as ch:
            admin = apb_grpc.RulesAdminServiceStub(ch)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError):
                admin.Reload(
                    apb.ReloadRequest(), metadata=[("authorization", f"Bearer {ADMIN_TOKEN[:-1]}")], timeout=10
                )
            assert admin.Reload(apb.ReloadRequest(), metadata=AUTH, timeout=30).ok
    events = [e["event"] for e in logs]
    assert {"listening", "admin_denied", "admin_reload", "rules_reloaded"} <= set(events)
    (listening,) = [e for e in logs if e["event"] == "listening"]
    assert listening["admin"] is True and listening["config"]["admin_token"] == "set"
    assert ADMIN_TOKEN not in repr(logs) and ADMIN_TOKEN[:-1] not in repr(logs)
