"""`liandong serve --workers N`: a supervisor and N worker processes sharing one gRPC port.

durable-rules is not thread-safe, so one process evaluates one incident at a time (runtime.py).
To use more cores, each worker is a whole service in its own process, with its own engine, bound
to the same address with SO_REUSEPORT: the kernel spreads incoming connections over the workers
(a connection stays with one worker, so spread comes from having several client connections).

The supervisor serves no calls itself. It
- starts the workers (multiprocessing "spawn": no state inherited from a process with threads) and
  waits until every one is SERVING; if one fails to start (invalid rules, address in use), it stops
  the others and exits 1, as `liandong serve` does;
- forwards SIGHUP to every worker, so each reloads its own engine from the rules directory;
- on SIGTERM or SIGINT forwards SIGTERM, waits for every worker to drain (`--grace-seconds`, plus
  a margin), and exits 0; a worker still running after that is killed and the exit code is 1;
- replaces a worker that dies (same index, new pid), waiting longer each time one dies soon after
  starting (0.5 s doubling up to 30 s), so a crash loop does not spin.

Metrics: workers cannot share the metrics port. Each worker serves its metrics on an ephemeral
loopback port and tells the supervisor; the supervisor serves `--metrics-listen` and, on every
scrape, reads each worker's metrics and returns them with a `worker` label (the worker's index,
0..N-1, reused by its replacement), plus `liandong_workers` and `liandong_worker_restarts_total`.
So one scrape target per pod still sees everything; sum over `worker` for the pod's totals.
A worker that is restarting is missing from that scrape, and its counters start again from zero,
which Prometheus' rate() treats as a counter reset.

Workers exit when the supervisor goes away (they watch their pipe to it).

Logs: each worker sends its log lines over a pipe of its own; one supervisor thread per worker
writes them to the supervisor's stderr, one whole line per write, so lines of two workers never mix.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from liandong.server.config import Config
from liandong.server.metrics import WORKER_RESTARTS, WORKERS

log = structlog.get_logger("liandong.supervisor")

STARTUP_TIMEOUT = 120.0  # seconds for every worker to load the rules and say it serves
STOP_MARGIN = 10.0  # seconds past --grace-seconds before a draining worker is killed
SCRAPE_TIMEOUT = 2.0
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
STABLE_AFTER = 10.0  # a worker that ran this long before dying is replaced at once


# -- worker side ------------------------------------------------------------------------------------
def _watch_supervisor(conn: Connection) -> None:
    """SIGTERM this worker when the pipe to the supervisor closes (the supervisor is gone)."""
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        os.kill(os.getpid(), signal.SIGTERM)


def worker_main(config: Config, index: int, conn: Connection, log_conn: Connection | None = None) -> None:
    """A worker: the full service, on the shared port, reporting to the supervisor when SERVING.
    Its log lines go to the supervisor over `log_conn`, one message per line (see server/logs.py)."""
    from liandong.server import app, logs

    logs.configure(config.log_level, config.log_format, sink=log_conn.send_bytes if log_conn is not None else None)

    def label(logger: object, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
        event.setdefault("worker", index)  # every line of this process, from every thread
        return event

    structlog.configure(processors=[label, *structlog.get_config()["processors"]])

    def ready(service: app.Service) -> None:
        conn.send(("ready", os.getpid(), service.port, service.metrics_port))
        threading.Thread(target=_watch_supervisor, args=(conn,), name="supervisor-watch", daemon=True).start()

    raise SystemExit(app.run(config, on_ready=ready))


def worker_config(config: Config) -> Config:
    """What each worker runs: one process, the shared port, metrics on a loopback port of its own."""
    return replace(config, workers=1, reuse_port=True, metrics_listen="127.0.0.1:0" if config.metrics_listen else "")


# -- supervisor side --------------------------------------------------------------------------------
@dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    started: float
    pid: int = 0
    metrics_port: int = 0
    ready: bool = False
    logs: threading.Thread | None = None  # forwards its log lines; ends when the worker does


def _forward_logs(conn: Connection) -> None:
    """Write a worker's log lines to the supervisor's stderr, each whole, until the worker exits."""
    from liandong.server.logs import write_line

    try:
        while True:
            line = conn.recv_bytes()
            with contextlib.suppress(OSError):  # stderr gone: keep draining, or the worker would block on its next line
                write_line(line)
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


class WorkerMetrics:
    """A collector that reads every worker's metrics and labels each sample with the worker index."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for index, port in self.supervisor.metrics_ports():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT) as reply:
                    text = reply.read().decode("utf-8")
            except OSError:
                continue  # restarting or stopping: missing from this scrape
            for family in text_string_to_metric_families(text):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for s in family.samples:
                    merged.add_sample(s.name, {**s.labels, "worker": str(index)}, s.value, s.timestamp, s.exemplar)
        yield from families.values()


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.worker_config = worker_config(config)
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._lock = threading.Lock()
        self._restart_at: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        self._signals: list[int] = []
        self.registry = CollectorRegistry()
        self._live = Gauge(
            WORKERS, "Worker processes serving (SERVING reported to the supervisor)", registry=self.registry
        )
        self._restarts = Counter(WORKER_RESTARTS, "Workers replaced after they died", registry=self.registry)
        self._metrics_httpd: Any = None

    def metrics_ports(self) -> list[tuple[int, int]]:
        with self._lock:
            return sorted((w.index, w.metrics_port) for w in self._workers.values() if w.ready and w.metrics_port)

    def _start(self, index: int) -> _Worker:
        parent, child = self._context.Pipe()
        log_in, log_out = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_main, args=(self.worker_config, index, child, log_out), name=f"liandong-worker-{index}"
        )
        process.start()
        child.close()
        log_out.close()  # the worker holds the only write end: its exit is the reader's end of file
        forwarder = threading.Thread(target=_forward_logs, args=(log_in,), name=f"worker-{index}-logs", daemon=True)
        forwarder.start()
        worker = _Worker(index, process, parent, time.monotonic(), pid=process.pid or 0, logs=forwarder)
        with self._lock:
            self._workers[index] = worker
        log.info("worker_started", worker=index, pid=worker.pid)
        return worker

    def _on_message(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            worker.conn.close()
            return
        if message[0] == "ready":
            _, pid, port, metrics_port = message
            with self._lock:
                worker.pid, worker.metrics_port, worker.ready = pid, metrics_port, True
            self._live.set(sum(1 for w in self._workers.values() if w.ready))
            log.info("worker_ready", worker=worker.index, pid=pid, port=port)

    def _signal(self, sig: int) -> None:
        for w in list(self._workers.values()):
            # A worker sets its handlers before it reports ready; before that a signal would kill it.
            if w.process.is_alive() and (w.ready or sig in (signal.SIGTERM, signal.SIGKILL)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.process.pid, sig)

    def _waitables(self) -> list[Any]:
        out: list[Any] = [w.process.sentinel for w in self._workers.values()]
        out.extend(w.conn for w in self._workers.values() if not w.conn.closed)
        return out

    def _pump(self, timeout: float) -> list[_Worker]:
        """Handle messages for up to `timeout` seconds; the workers that have exited."""
        ready = wait(self._waitables(), timeout)
        exited = []
        for w in list(self._workers.values()):
            if not w.conn.closed and w.conn in ready:
                self._on_message(w)
            if w.process.sentinel in ready or not w.process.is_alive():
                w.process.join(0)
                if w.process.exitcode is not None:
                    exited.append(w)
        return exited

    def start_all(self) -> bool:
        for index in range(self.config.workers):
            self._start(index)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and not self._signals:
            exited = self._pump(0.2)
            if exited:
                w = exited[0]
                log.error("worker_failed_to_start", worker=w.index, pid=w.pid, exitcode=w.process.exitcode)
                return False
            if all(w.ready for w in self._workers.values()):
                return True
        if not self._signals:
            log.error("workers_not_ready", timeout_s=STARTUP_TIMEOUT)
        return False

    def serve_metrics(self) -> None:
        if not self.config.metrics_listen:
            return
        self.registry.register(WorkerMetrics(self))
        host, _, port = self.config.metrics_listen.rpartition(":")
        self._metrics_httpd, _ = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        log.info("metrics_listening", address=self.config.metrics_listen, port=self._metrics_httpd.server_port)

    def run(self) -> int:
        for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(handled, self._on_signal)
        try:
            self.serve_metrics()
        except OSError as exc:
            log.error(
                "startup_failed", error=f"cannot serve metrics on {self.config.metrics_listen}: {exc.strerror or exc}"
            )
            return 1
        try:
            if not self.start_all():
                return 0 if self._stop() and self._signals else 1
            log.info("supervising", workers=self.config.workers, address=self.config.listen)
            while True:
                while self._signals:
                    sig = self._signals.pop(0)
                    log.info("signal", signal=signal.Signals(sig).name)
                    if sig == signal.SIGHUP:
                        self._signal(signal.SIGHUP)
                    else:
                        return 0 if self._stop() else 1
                for w in self._pump(0.2):
                    self._replace_later(w)
                self._restart_due()
        finally:
            self._close_metrics()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _replace_later(self, w: _Worker) -> None:
        uptime = time.monotonic() - w.started
        delay = 0.0 if uptime >= STABLE_AFTER else self._backoff.get(w.index, BACKOFF_MIN)
        self._backoff[w.index] = BACKOFF_MIN if uptime >= STABLE_AFTER else min(BACKOFF_MAX, delay * 2)
        log.error(
            "worker_exited",
            worker=w.index,
            pid=w.pid or w.process.pid,
            exitcode=w.process.exitcode,
            uptime_s=round(uptime, 1),
            restart_in_s=delay,
        )
        with self._lock:
            self._workers.pop(w.index, None)
        w.conn.close()
        self._live.set(sum(1 for x in self._workers.values() if x.ready))
        self._restart_at[w.index] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, when in list(self._restart_at.items()):
            if when <= now:
                del self._restart_at[index]
                self._restarts.inc()
                self._start(index)

    def _stop(self) -> bool:
        """SIGTERM every worker and wait for them to drain; False if one had to be killed."""
        self._restart_at.clear()
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_seconds + STOP_MARGIN
        clean = True
        for w in list(self._workers.values()):
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                log.error("worker_killed", worker=w.index, pid=w.process.pid)
                w.process.kill()
                w.process.join(5)
                clean = False
            w.conn.close()
            if w.logs is not None:
                w.logs.join(STOP_MARGIN)  # its last lines (`stopped`) are written before the supervisor's
        self._live.set(0)
        log.info("stopped", workers=len(self._workers), clean=clean)
        return clean

    def _close_metrics(self) -> None:
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
            self._metrics_httpd = None


def supervise(config: Config) -> int:
    """Run `config.workers` workers on `config.listen` until SIGTERM or SIGINT; the exit code."""
    if config.listen.rpartition(":")[2] == "0":
        # Every worker would get a port of its own; the workers must share one.
        log.error("startup_failed", error="--workers needs a fixed port in --listen, not 0")
        return 1
    if config.http and config.http.rpartition(":")[2] == "0":
        log.error("startup_failed", error="--workers needs a fixed port in --http, not 0")
        return 1
    return Supervisor(config).run()
