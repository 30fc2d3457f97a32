"""SIGHUP at start-up and in bursts, against `liandong serve` in a subprocess.

The start-up test holds the first load with a hook until the SIGHUP handler has run, so the
signal always lands during the load (it used to skip when the load won the race)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from liandong.client import Client
from support.processes import Serve, log_events, wait_until
from support.rules import copy_demo
from support.servers import LOOPBACK

BOUND = 30.0

# Runs `liandong` with the first load held until a SIGHUP has been handled by the service's own
# handler (wrapped to set an event), so the signal provably arrives while the service is loading.
HELD_FIRST_LOAD = """
import json, signal, sys, threading
from liandong.server import reload as reload_module

handled = threading.Event()
real_signal = signal.signal

def wrapping_signal(signum, handler):
    if signum == signal.SIGHUP and callable(handler):
        def wrapped(number, frame):
            handler(number, frame)
            handled.set()
        return real_signal(signum, wrapped)
    return real_signal(signum, handler)

signal.signal = wrapping_signal
real_reload = reload_module.RulesState.reload

def held_reload(self, trigger):
    if trigger == "startup":
        print(json.dumps({"event": "test_first_load_held"}), file=sys.stderr, flush=True)
        if not handled.wait(60):  # the handler runs on this (main) thread, interrupting the wait
            raise SystemExit("no SIGHUP arrived")
        print(json.dumps({"event": "test_first_load_released"}), file=sys.stderr, flush=True)
    return real_reload(self, trigger)

reload_module.RulesState.reload = held_reload
from liandong.cli import main
sys.exit(main())
"""


class HeldServe(Serve):
    """`liandong serve` through the script above; the same log and helpers as Serve."""

    def __init__(self, workdir: Path, *args: str) -> None:
        script = workdir / "held_first_load.py"
        script.write_text(HELD_FIRST_LOAD, encoding="utf-8")
        self.log_path = workdir / "serve.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LIANDONG_")}
        environ["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [
            sys.executable,
            str(script),
            "serve",
            "--listen",
            f"{LOOPBACK}:0",
            "--metrics-listen",
            "",
            "--log-format",
            "json",
            *args,
        ]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir, env=environ)
        self.port = 0
        self.metrics_port = 0


def test_sighup_during_the_first_load_is_handled_and_the_service_serves(tmp_path: Path) -> None:
    """A SIGHUP that arrives while the first load is held neither kills `liandong serve` nor is lost: once serving, it runs a signal reload (skipped: nothing changed) and answers."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    proc = HeldServe(tmp_path, "--rules-dir", str(rules))
    try:
        assert wait_until(
            lambda: proc.event("test_first_load_held") is not None or proc.proc.poll() is not None, BOUND
        ), proc.log()
        assert proc.handles(signal.SIGHUP), "the handler is installed before the first load"
        assert proc.event("rules_reloaded") is None  # the load is held: the signal lands during it
        proc.send_signal(signal.SIGHUP)
        proc.wait_serving(BOUND)
        assert proc.event("test_first_load_released") is not None
        assert wait_until(
            lambda: proc.event("rules_reload_skipped", trigger="signal") is not None or proc.proc.poll() is not None,
            BOUND,
        ), proc.log()
        assert proc.proc.poll() is None, proc.log()
        with Client(proc.target, timeout=10) as client:
            assert client.determine("demo", {"deaths": 3}).level.code == "III"
    finally:
        proc.stop()


def test_a_burst_of_sighups_with_nothing_changed_reloads_nothing(tmp_path: Path) -> None:
    """40 SIGHUPs with the rules directory unchanged run no reload: each one that is served is logged as skipped, and the service keeps answering."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    proc = Serve(tmp_path, "--rules-dir", str(rules), metrics=False)
    try:
        proc.wait_serving(BOUND)
        proc.wait_handles(signal.SIGHUP)
        for _ in range(40):
            proc.send_signal(signal.SIGHUP)
        assert wait_until(
            lambda: proc.event("rules_reload_skipped", trigger="signal") is not None or proc.proc.poll() is not None,
            BOUND,
        ), proc.log()
        with Client(proc.target, timeout=10) as client:
            assert client.determine("demo", {"deaths": 3}).level.code == "III"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(BOUND) == 0
    finally:
        proc.stop()
    by_signal = [e["event"] for e in log_events(proc.log()) if e.get("trigger") == "signal"]
    assert 1 <= len(by_signal) <= 40 and set(by_signal) == {"rules_reload_skipped"}, by_signal
