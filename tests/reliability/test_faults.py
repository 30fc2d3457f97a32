"""Faults injected into a running service: the rules directory vanishing or half written during a
reload, the engine failing mid-stream, reloads racing each other, and ports already taken."""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import grpc
import pytest

from liandong.engine.runtime import DurableRuntime
from liandong.errors import EngineFailure
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import answers_of, batches, request
from support.metrics import sample
from support.processes import Serve
from support.rules import replace_once
from support.servers import LOOPBACK, running


def determine(port: int, deaths: int = 3) -> pb.Determination:
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        answer: pb.Determination = pb_grpc.ResponseServiceStub(channel).Determine(
            request("demo", {"deaths": deaths}), timeout=10
        )  # type: ignore[no-untyped-call]
        return answer


def test_rules_directory_vanishing_keeps_the_old_set(rules_dir: Path, runtime: DurableRuntime) -> None:
    """A reload while the rules directory is gone fails, naming the directory; the old set answers; once it is back, a reload succeeds."""
    with running(rules_dir, runtime) as svc:
        before = determine(svc.port)
        moved = rules_dir.with_name("moved-away")
        rules_dir.rename(moved)
        outcome = svc.state.reload("admin")
        assert not outcome.ok and any("no such file or directory" in e for e in outcome.errors)
        assert determine(svc.port).content_hash == before.content_hash
        moved.rename(rules_dir)
        assert svc.state.reload("admin").ok
        assert determine(svc.port).content_hash == before.content_hash  # same content, same hash


def test_half_written_document_is_refused_until_complete(rules_dir: Path, runtime: DurableRuntime) -> None:
    """A document caught half written (no atomic rename) fails the reload with a located problem; the completed file then loads."""
    document = rules_dir / "demo" / "2024.1.yaml"
    full = replace_once(document.read_text(encoding="utf-8"), "title: 测试预案\n", "title: 测试预案(修订)\n")
    with running(rules_dir, runtime) as svc:
        before = determine(svc.port)
        data = full.encode("utf-8")
        for cut in (len(data) // 3, len(data) // 2, len(data) - 40):
            document.write_bytes(data[:cut])
            outcome = svc.state.reload("watch")
            assert not outcome.ok and all(":" in e for e in outcome.errors), outcome.errors
            assert determine(svc.port).content_hash == before.content_hash
        document.write_bytes(data)
        assert svc.state.reload("watch").ok
        assert determine(svc.port).content_hash != before.content_hash
        assert sample(svc.registry, "liandong_reloads_total", outcome="failure", trigger="watch") == 3


def test_engine_failure_mid_stream_ends_that_stream_only(
    rules_dir: Path, runtime: DurableRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine failing on the third request of a stream ends it INTERNAL after two answers; other calls go on."""
    real_fire = runtime.fire
    calls = 0

    def flaky(name: str, fact: dict[str, object]) -> tuple[str, ...]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise EngineFailure("injected fault")
        return real_fire(name, fact)

    with running(rules_dir, runtime) as svc:
        monkeypatch.setattr(runtime, "fire", flaky)
        answers: list[pb.Determination] = []
        with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                stream = pb_grpc.ResponseServiceStub(channel).DetermineStream(
                    batches([request("demo", {"deaths": d}) for d in (1, 5, 10, 20)]), timeout=10
                )  # type: ignore[no-untyped-call]
                for answer in answers_of(stream):
                    answers.append(answer)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert "injected" not in (caught.value.details() or "")  # the engine's words stay in the service
        assert [a.level.code for a in answers] == ["IV", "III"]
        assert determine(svc.port, 20).level.code == "II"
        assert sample(svc.registry, "liandong_rpc_requests_total", method="DetermineStream", code="INTERNAL") == 1


def test_reloads_racing_each_other_and_calls_stay_consistent(rules_dir: Path, runtime: DurableRuntime) -> None:
    """Eight threads reloading at once while calls run: every reload completes with an outcome, every call is answered."""
    document = rules_dir / "demo" / "2024.1.yaml"
    document.write_text(
        replace_once(document.read_text(encoding="utf-8"), "title: 测试预案\n", "title: 测试预案(并发)\n"),
        encoding="utf-8",
    )
    outcomes: list[bool] = []
    failures: list[str] = []
    stop = threading.Event()
    with running(rules_dir, runtime) as svc:
        hashes = {determine(svc.port).content_hash}

        def reload() -> None:
            for _ in range(3):
                outcomes.append(svc.state.reload("signal").ok)

        def call() -> None:
            for _ in range(2_000):
                if stop.is_set():
                    return
                try:
                    answer = determine(svc.port, 10)
                    if answer.content_hash not in hashes or answer.level.code != "II":
                        failures.append(answer.content_hash)
                except grpc.RpcError as error:
                    failures.append(error.code().name)

        callers = [threading.Thread(target=call, daemon=True) for _ in range(4)]
        reloaders = [threading.Thread(target=reload, daemon=True) for _ in range(8)]
        for t in callers + reloaders:
            t.start()
        for t in reloaders:
            t.join(120)
        stop.set()
        for t in callers:
            t.join(30)
        assert not any(t.is_alive() for t in callers + reloaders)
    assert outcomes == [True] * 24
    assert failures == []
    assert svc.registry.get_sample_value("liandong_reloads_total", {"outcome": "success", "trigger": "signal"}) == 24


@pytest.mark.parametrize("which", ["grpc", "metrics"])
def test_a_port_already_taken_is_a_clean_exit_1(which: str, tmp_path: Path) -> None:
    """When the gRPC or metrics port is taken, `liandong serve` exits 1 with a startup_failed line naming the address, no traceback."""
    shutil.copytree(Path(__file__).resolve().parent.parent / "data" / "rules" / "demo", tmp_path / "rules" / "demo")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        address = f"{LOOPBACK}:{taken.getsockname()[1]}"
        flag = "--listen" if which == "grpc" else "--metrics-listen"
        server = Serve(tmp_path, "--rules-dir", str(tmp_path / "rules"), flag, address)  # the later flag wins
        try:
            exit_code = server.proc.wait(timeout=60)
        finally:
            server.stop()
    failed = server.event("startup_failed")
    assert exit_code == 1
    assert failed is not None and address in str(failed["error"]), server.log()
    assert "Traceback" not in server.log()


def test_missing_rules_directory_is_a_clean_exit_1(tmp_path: Path) -> None:
    """Start-up without a rules directory exits 1 naming it."""
    server = Serve(tmp_path, "--rules-dir", str(tmp_path / "no-such-rules"))
    try:
        exit_code = server.proc.wait(timeout=60)
    finally:
        server.stop()
    failed = server.event("startup_failed")
    assert exit_code == 1 and failed is not None
    assert "no-such-rules" in str(failed["error"]) and "no such file or directory" in str(failed["error"])
