"""`liandong serve --workers 2`: two workers share one port, a crashed worker is replaced while the port keeps
answering, the supervisor's metrics cover both workers, and SIGTERM stops them all with exit 0."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

import grpc

from liandong.server.metrics import BUILD_INFO, PROCESS_START_TIME, WORKER_RESTARTS
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import request
from support.metrics import samples, scrape
from support.processes import Serve, free_port, wait_until
from support.rules import copy_demo
from support.servers import LOOPBACK

BOUND = 60.0


def call_on_a_new_connection(target: str) -> str:
    """One Determine from a fresh channel (so the kernel picks a worker for it): the status code name."""
    # A local subchannel pool: otherwise gRPC shares one connection between channels to one target.
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            answer = pb_grpc.ResponseServiceStub(channel).Determine(request("demo", {"deaths": 10}), timeout=10)  # type: ignore[no-untyped-call]
        except grpc.RpcError as error:
            return str(error.code().name)
        return "OK" if answer.level.code == "II" else "WRONG"


def replacement_decisions(events: list[dict[str, object]], pid: int) -> int:
    """Decisions logged by worker 0 after its replacement (that pid) said it was ready."""
    ready_at = next((i for i, e in enumerate(events) if e.get("event") == "worker_ready" and e.get("pid") == pid), None)
    if ready_at is None:
        return 0
    return sum(1 for e in events[ready_at:] if e.get("event") == "decision" and e.get("worker") == 0)


def test_a_crashed_worker_is_replaced_and_the_port_keeps_answering(tmp_path: Path) -> None:
    """SIGKILL one of two workers under load: the other keeps answering on the port, the supervisor starts a replacement, which answers too, and SIGTERM then exits 0."""
    copy_demo(tmp_path / "rules")
    port, metrics_port = free_port(), free_port()
    target = f"{LOOPBACK}:{port}"
    # The later --metrics-listen wins over Serve's own: the supervisor serves every worker's metrics there.
    server = Serve(
        tmp_path,
        "--workers",
        "2",
        "--listen",
        target,
        "--metrics-listen",
        f"{LOOPBACK}:{metrics_port}",
        "--rules-dir",
        str(tmp_path / "rules"),
        "--grace-seconds",
        "2",
    )
    worker_pids: set[int] = set()
    codes: Counter[str] = Counter()
    after_crash: Counter[str] = Counter()
    crashed = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()

    def ready() -> list[dict[str, object]]:
        return [e for e in server.events() if e.get("event") == "worker_ready"]

    def load() -> None:
        for _ in range(20_000):
            if stop.is_set():
                return
            code = call_on_a_new_connection(target)
            with lock:
                codes[code] += 1
                if crashed.is_set():
                    after_crash[code] += 1

    try:
        assert wait_until(lambda: len(ready()) >= 2 or server.proc.poll() is not None, BOUND), server.log()[-3000:]
        first = {int(str(e["worker"])): int(str(e["pid"])) for e in ready()}
        worker_pids.update(first.values())
        assert sorted(first) == [0, 1]
        assert call_on_a_new_connection(target) == "OK"
        metrics = scrape(metrics_port)
        assert "liandong_workers 2.0" in metrics
        assert 'worker="0"' in metrics and 'worker="1"' in metrics
        # Each worker's own process and build series, labelled by worker (the standard collectors are on each registry).
        page = samples(metrics)
        started = {dict(labels).get("worker"): v for (name, labels), v in page.items() if name == PROCESS_START_TIME}
        assert sorted(started) == ["0", "1"] and all(v > 0 for v in started.values())
        assert sorted(dict(labels)["worker"] for (name, labels) in page if name == BUILD_INFO) == ["0", "1"]
        loaders = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in loaders:
            t.start()
        assert wait_until(lambda: codes["OK"] >= 50, BOUND)
        victim = first[0]
        os.kill(victim, signal.SIGKILL)  # a crash: no drain, no goodbye
        crashed.set()
        assert wait_until(lambda: server.event("worker_exited", pid=victim) is not None, BOUND), server.log()[-3000:]
        assert wait_until(
            lambda: any(int(str(e["worker"])) == 0 and int(str(e["pid"])) != victim for e in ready()), BOUND
        ), server.log()[-3000:]
        replacement = next(
            int(str(e["pid"])) for e in ready() if int(str(e["worker"])) == 0 and int(str(e["pid"])) != victim
        )
        worker_pids.add(replacement)
        assert samples(scrape(metrics_port)).get((WORKER_RESTARTS + "_total", frozenset())) == 1
        # The replacement answers too: some fresh connection lands on it (each decision logs its worker).
        assert wait_until(lambda: replacement_decisions(server.events(), replacement) > 0, BOUND), dict(codes)
        stop.set()
        for t in loaders:
            t.join(BOUND)
        fresh = [call_on_a_new_connection(target) for _ in range(10)]  # each lands on either worker
        assert fresh == ["OK"] * 10, fresh
    finally:
        stop.set()
        server.send_signal(signal.SIGTERM)
        try:
            exit_code: int | None = server.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            exit_code = None
        server.stop()
        for pid in worker_pids:  # workers exit with their supervisor; make sure of it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    print(
        f"\nworker figures: calls by code {dict(codes)}, after the crash {dict(after_crash)}; worker 0 pid {victim} -> {replacement}"
    )
    assert exit_code == 0
    assert server.event("stopped") is not None
    assert server.event("worker_exited", pid=victim) is not None
    assert set(codes) <= {"OK", "UNAVAILABLE"}, (
        codes
    )  # a call on the dead worker's connection may be refused, never answered wrongly
    assert after_crash["OK"] >= 50  # the port kept answering while worker 0 was dead and after
