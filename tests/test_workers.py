"""`liandong serve --workers 2`: a supervisor and two worker processes sharing one port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from liandong.client import Client

ROOT = Path(__file__).resolve().parent.parent
LIANDONG = str(Path(sys.executable).with_name("liandong"))
DEADLINE = 60.0  # seconds for any one wait below


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _events(log: Path, name: str) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            out.append(event)
    return out


def _wait_for(what: str, check: object, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        assert proc.poll() is None, f"supervisor exited ({proc.returncode}) while waiting for {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(port: int) -> bool:
    """One Determine on a fresh connection; True if it answered."""
    try:
        with Client(f"127.0.0.1:{port}", timeout=5, retries=0) as client:
            return client.determine("fire", {"deaths": 3}).level.code == "III"
    except Exception:
        return False


def test_workers_share_the_port_replace_a_killed_worker_and_stop_on_sigterm(tmp_path: Path) -> None:
    """Two workers answer on one port; SIGKILL of one gets a replacement while the port keeps answering; SIGTERM exits 0."""
    port, metrics_port = _free_port(), _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [LIANDONG, "serve", "--workers", "2", "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics_port}",
             "--rules-dir", str(ROOT / "rules"), "--grace-seconds", "2"],
            stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
        )
    try:
        _wait_for("two workers ready", lambda: len(_events(log, "worker_ready")) >= 2, proc)
        first = {int(str(e["pid"])) for e in _events(log, "worker_ready")}
        assert len(first) == 2
        assert _answers(port)

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert "liandong_workers 2.0" in metrics
        assert 'worker="0"' in metrics and 'worker="1"' in metrics

        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        _wait_for("the port answering after the kill", lambda: _answers(port), proc)
        _wait_for("a replacement worker", lambda: {int(str(e["pid"])) for e in _events(log, "worker_ready")} - first, proc)
        replacement = {int(str(e["pid"])) for e in _events(log, "worker_ready")} - first
        assert victim not in replacement
        for _ in range(10):  # fresh connections land on either worker; every one must be answered
            assert _answers(port)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
        assert _events(log, "stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in {int(str(e["pid"])) for e in _events(log, "worker_started")}:
            try:
                if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)  # a worker of ours left behind by a failure above
            except OSError:
                pass


def test_workers_need_a_fixed_port() -> None:
    """--workers with port 0 is refused: every worker would get a different port."""
    result = subprocess.run(
        [LIANDONG, "serve", "--workers", "2", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--rules-dir", str(ROOT / "rules")],
        capture_output=True, timeout=DEADLINE, cwd=ROOT,
    )
    assert result.returncode == 1
    assert b"fixed port" in result.stderr

