"""`liandong serve --workers 3` under load, with one worker killed: every line the service writes to
its (piped) stderr is whole JSON, and every answer a caller received has its decision line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import request
from support.processes import free_port, wait_until
from support.rules import rules_tree
from support.servers import LOOPBACK

WORKERS = 3
CALLERS = 6
CALLS_PER_CALLER = 400
LOAD_SECONDS = 20.0  # whichever comes first
BOUND = 60.0


def _json_lines(raw: bytes) -> tuple[list[dict[str, object]], list[bytes]]:
    good: list[dict[str, object]] = []
    bad: list[bytes] = []
    for line in raw.split(b"\n")[:-1]:  # the last piece is what follows the last newline
        try:
            event = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if isinstance(event, dict):
            good.append(event)
        else:
            bad.append(line)
    return good, bad


def test_every_log_line_of_three_workers_under_load_is_whole_json(tmp_path: Path) -> None:
    """Three workers answering six callers, one of them killed midway, write only whole JSON lines to a shared pipe, and every answer received has its decision line."""
    rules = rules_tree(tmp_path / "rules", "demo")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "liandong.cli",
        "serve",
        "--workers",
        str(WORKERS),
        "--listen",
        f"{LOOPBACK}:{port}",
        "--metrics-listen",
        "",
        "--rules-dir",
        str(rules),
        "--log-format",
        "json",
        "--log-facts",
        "--grace-seconds",
        "5",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIANDONG_")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    chunks: list[bytes] = []

    def drain() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            chunks.append(chunk)

    reader = threading.Thread(target=drain, name="stderr-reader", daemon=True)
    reader.start()

    def events() -> list[dict[str, object]]:
        return _json_lines(b"".join(chunks))[0]

    answered: list[str] = []
    failed: list[grpc.StatusCode] = []
    lock = threading.Lock()
    halfway = threading.Event()
    try:
        assert wait_until(
            lambda: any(e.get("event") == "supervising" for e in events()) or proc.poll() is not None, BOUND
        ), b"".join(chunks)[-4000:]
        assert proc.poll() is None
        stop_at = time.monotonic() + LOAD_SECONDS

        def caller(n: int) -> None:
            # A connection of its own (no shared subchannel), so the kernel spreads callers over the workers.
            with grpc.insecure_channel(f"{LOOPBACK}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
                for i in range(CALLS_PER_CALLER):
                    if time.monotonic() > stop_at:
                        return
                    if n == 0 and i == CALLS_PER_CALLER // 2:
                        halfway.set()
                    try:
                        det = stub.Determine(
                            request(
                                "demo", {"deaths": i % 12, "note": "长" * 20}, incident_id=f"caller{n}-{i}-" + "x" * 200
                            ),
                            timeout=10,
                        )
                    except grpc.RpcError as exc:
                        with lock:
                            failed.append(exc.code())
                        continue
                    with lock:
                        answered.append(det.decision_id)

        threads = [threading.Thread(target=caller, args=(n,), name=f"caller-{n}") for n in range(CALLERS)]
        for t in threads:
            t.start()
        if halfway.wait(LOAD_SECONDS):
            victim = next(e for e in events() if e.get("event") == "worker_ready" and e.get("worker") == 0)
            os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        for t in threads:
            t.join(BOUND)
        assert not any(t.is_alive() for t in threads)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(BOUND) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(BOUND)
        reader.join(BOUND)
    good, bad = _json_lines(b"".join(chunks))
    decisions = [e for e in good if e.get("event") == "decision"]
    print(
        f"\nworker log figures: {len(answered)} answers, {len(failed)} failed calls ({sorted({c.name for c in failed})}), "
        f"{len(good)} JSON lines ({len(decisions)} decisions), {len(bad)} unreadable lines"
    )
    assert bad == []
    assert any(e.get("event") == "worker_exited" for e in good)  # the kill happened and was logged
    logged = [str(e["decision_id"]) for e in decisions]
    assert len(logged) == len(set(logged))
    assert set(answered) <= set(logged)  # every answer received has its whole decision line
    assert len(answered) >= CALLERS * 20
    assert {c for c in failed} <= {grpc.StatusCode.UNAVAILABLE}  # only calls on the killed worker's connections
