"""`liandong serve --http` as a process: the web port starts and stops with the service, alone and under --workers."""

from __future__ import annotations

import signal
from pathlib import Path

from support.data import BUNDLED
from support.processes import Serve, free_port, serving
from support.servers import LOOPBACK
from support.web import call

DEADLINE = 60.0


def test_sigterm_stops_the_web_port_with_the_service(tmp_path: Path) -> None:
    """The web port answers while the service serves; SIGTERM drains both and exits 0."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}/v1/rulesets"
    with serving(tmp_path, "--rules-dir", str(BUNDLED), "--http", f"{LOOPBACK}:{port}", metrics=False) as server:
        assert server.event("http_listening", port=port) is not None
        assert call(url).status == 200
        server.wait_handles(signal.SIGTERM)
        server.send_signal(signal.SIGTERM)
        assert server.wait(DEADLINE) == 0
        assert server.event("stopped") is not None
    try:
        call(url)
    except OSError:
        return
    raise AssertionError("the web port still answers after the service stopped")


def test_workers_share_a_fixed_web_port(tmp_path: Path) -> None:
    """Under --workers 2 each worker serves the web port (SO_REUSEPORT): every new connection is answered, SIGTERM exits 0."""
    port, http_port = free_port(), free_port()
    server = Serve(
        tmp_path,
        "--rules-dir",
        str(BUNDLED),
        "--workers",
        "2",
        "--listen",
        f"{LOOPBACK}:{port}",
        "--http",
        f"{LOOPBACK}:{http_port}",
        metrics=False,
    )
    try:
        for index in (0, 1):
            server.wait_event("http_listening", DEADLINE, worker=index)
            server.wait_event("worker_ready", DEADLINE, worker=index)
        for _ in range(6):  # each on a new connection (urllib closes it), so the kernel may pick either worker
            assert call(f"http://{LOOPBACK}:{http_port}/v1/rulesets").status == 200
        server.wait_handles(signal.SIGTERM)
        server.send_signal(signal.SIGTERM)
        assert server.wait(DEADLINE) == 0
    finally:
        server.stop()


def test_workers_refuse_web_port_zero(tmp_path: Path) -> None:
    """--workers with --http on port 0 is refused: each worker would get a port of its own."""
    server = Serve(
        tmp_path,
        "--rules-dir",
        str(BUNDLED),
        "--workers",
        "2",
        "--listen",
        f"{LOOPBACK}:{free_port()}",
        "--http",
        f"{LOOPBACK}:0",
        metrics=False,
    )
    try:
        assert server.wait(DEADLINE) == 1
        assert "fixed port in --http" in server.log()
    finally:
        server.stop()
