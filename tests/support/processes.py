"""`liandong serve` as a subprocess on 127.0.0.1, its JSON log lines, and bounded waits.

A subprocess server reports the ports it got in its `listening` log line; it is always killed by
stop() in a finally (or by leaving a `serving` block), whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from support.servers import LOOPBACK


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for what cannot take port 0, e.g. --workers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll predicate() until it is true or timeout seconds pass; returns its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


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


class Serve:
    """`liandong serve` on 127.0.0.1 with JSON logs in a file, metrics on a free port unless
    metrics=False. The environment's LIANDONG_* variables are not passed on (only `env`'s are).
    Always call stop() in a finally."""

    def __init__(self, workdir: Path, *args: str, env: Mapping[str, str] | None = None, metrics: bool = True) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"serve-{time.monotonic_ns()}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LIANDONG_")}
        environ["PYTHONUNBUFFERED"] = "1"
        environ.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        metrics_listen = f"{LOOPBACK}:0" if metrics else ""
        argv = [
            sys.executable,
            "-m",
            "liandong.cli",
            "serve",
            "--listen",
            f"{LOOPBACK}:0",
            "--metrics-listen",
            metrics_listen,
            "--log-format",
            "json",
            *args,
        ]
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir, env=environ
        )
        self.port = 0
        self.metrics_port = 0

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, object]]:
        return log_events(self.log())

    def event(self, name: str, **match: object) -> dict[str, object] | None:
        return find_event(self.events(), name, **match)

    def wait_event(self, name: str, timeout: float = 30.0, **match: object) -> dict[str, object]:
        assert wait_until(lambda: self.event(name, **match) is not None or self.proc.poll() is not None, timeout), (
            f"no '{name}' within {timeout}s:\n{self.log()[-3000:]}"
        )
        found = self.event(name, **match)
        assert found is not None, f"server exited ({self.proc.poll()}) before '{name}':\n{self.log()[-3000:]}"
        return found

    def wait_serving(self, timeout: float = 30.0) -> Serve:
        """Wait for `listening` and the start-up load of the rules, with the process still running;
        remembers the ports."""
        listening = self.wait_event("listening", timeout)
        self.port = int(str(listening["port"]))
        self.metrics_port = int(str(listening["metrics_port"]))
        self.wait_event("rules_reloaded", timeout, trigger="startup")
        self.wait_event("serving", timeout)  # health is SERVING once the store and clocks are up too
        assert self.proc.poll() is None, self.log()
        return self

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

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill the process if it still runs, and reap it."""
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=15)
        finally:
            self._log.close()


@contextlib.contextmanager
def serving(workdir: Path, *args: str, env: Mapping[str, str] | None = None, metrics: bool = True) -> Iterator[Serve]:
    """A `liandong serve` subprocess that is serving; killed when the block ends, whatever happens."""
    server = Serve(workdir, *args, env=env, metrics=metrics)
    try:
        yield server.wait_serving()
    finally:
        server.stop()
