"""The service's lifecycle: start, load rules, serve, reload, drain and stop."""

from __future__ import annotations

import asyncio
import copy
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from liandong.engine.runtime import DurableRuntime
from liandong.errors import StoreUnavailable
from liandong.server import identity
from liandong.server.admin import AdminServicer
from liandong.server.bridge import BlockingCalls, add_threaded
from liandong.server.clocks import ClockLoop, EventBus, Now, file_clock, system_now
from liandong.server.config import Config, is_loopback
from liandong.server.incidents import IncidentServicer
from liandong.server.metrics import (
    ActiveVersionCollector,
    IncidentCollector,
    Metrics,
    RulesDirectoryCollector,
    add_process_collectors,
)
from liandong.server.reload import RulesState, SignalReloads, Watcher
from liandong.server.servicer import ResponseServicer, register
from liandong.server.web.serve import WebServer
from liandong.store.sql import describe, open_store
from liandong.tls import TLSError, server_credentials
from liandong.v1 import admin_pb2, admin_pb2_grpc, incidents_pb2, incidents_pb2_grpc, liandong_pb2

log = structlog.get_logger("liandong.server")

RESPONSE_SERVICE = liandong_pb2.DESCRIPTOR.services_by_name["ResponseService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["RulesAdminService"].full_name
INCIDENT_SERVICE = incidents_pb2.DESCRIPTOR.services_by_name["IncidentService"].full_name


T = TypeVar("T")


class StartupError(Exception):
    """The service cannot start: bad address, or no valid rules to serve."""


class EventLoop:
    """The asyncio loop the gRPC server runs on, in a thread of its own: start() and stop() stay
    synchronous for their callers (run(), tests), and signals stay with the main thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="grpc-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (or exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Service:
    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        runtime: DurableRuntime | None = None,
        now: Now | None = None,
    ) -> None:
        """`now`: the clock incidents are judged by (tests inject one); else --clock-file, else the system's."""
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.state = RulesState(
            config.rules_dir,
            runtime or DurableRuntime(),
            self.metrics,
            config.run_fixtures_on_reload,
            shadow=Path(config.shadow) if config.shadow else None,
        )
        self.registry.register(ActiveVersionCollector(self.state.active_versions))
        self.registry.register(RulesDirectoryCollector(self.state.directory_status))
        add_process_collectors(self.registry)
        self.health = health.HealthServicer()
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0
        self._server: grpc.aio.Server | None = None
        self._loop: EventLoop | None = None
        self._blocking: BlockingCalls | None = None
        self._web: WebServer | None = None
        self._metrics_httpd: Any = None
        self._stopping = threading.Event()
        self._watcher: Watcher | None = None
        self.now: Now = now or (file_clock(config.clock_file) if config.clock_file else system_now)
        self.store = open_store(
            config.store, config.data_dir, on_error=lambda op: self.metrics.store_errors.labels(operation=op).inc()
        )
        self.registry.register(IncidentCollector(self.store.open_counts, self.store.pending_clocks))
        self.bus = EventBus()
        self.incidents: IncidentServicer | None = None
        self.clocks: ClockLoop | None = None

    def _set_health(self, serving: bool) -> None:
        value = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", RESPONSE_SERVICE, INCIDENT_SERVICE):
            self.health.set(name, value)
        self.metrics.serving.set(1 if serving else 0)

    def start(self) -> None:
        """Listen, load the rules, and serve; StartupError if the rules are not valid."""
        c = self.config
        self._set_health(False)
        credentials = None
        if c.tls_cert:
            try:
                credentials = server_credentials(c.tls_cert, c.tls_key, c.tls_client_ca)
            except TLSError as exc:
                raise StartupError(str(exc)) from None
        if c.metrics_listen:
            host, _, port = c.metrics_listen.rpartition(":")
            try:
                self._metrics_httpd, _ = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
            except OSError as exc:
                raise StartupError(f"cannot serve metrics on {c.metrics_listen}: {exc.strerror or exc}") from None
            self.metrics_port = self._metrics_httpd.server_port
        options = [
            ("grpc.max_receive_message_length", c.max_message_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 1 if c.reuse_port else 0),  # only workers of one supervisor share a port
        ]
        # Calls that only compute (ResponseService) run on the event loop; those that block (incidents,
        # admin reloads, health watches) in this pool of --max-workers threads.
        pool = futures.ThreadPoolExecutor(max_workers=c.max_workers, thread_name_prefix="rpc")
        blocking = BlockingCalls(pool)
        loop = EventLoop()

        async def create() -> grpc.aio.Server:
            return grpc.aio.server(
                migration_thread_pool=pool, options=options, maximum_concurrent_rpcs=c.max_concurrent_rpcs
            )

        server = loop.call(create())
        servicer = ResponseServicer(
            self.state,
            self.metrics,
            c.log_facts,
            max_stream_requests=c.max_stream_requests,
            max_message_bytes=c.max_message_bytes,
        )
        register(servicer, server)
        try:
            identities = identity.load(c.identities, loopback_plaintext=credentials is None and is_loopback(c.listen))
        except identity.IdentitiesError as exc:
            self._close_metrics()
            loop.close()
            raise StartupError(str(exc)) from None
        self.incidents = IncidentServicer(
            self.state,
            self.store,
            identities,
            self.metrics,
            self.now,
            self.bus,
            at_once_grace=c.at_once_grace,
            interval=c.clock_interval,
            stopping=self._stopping,
            on_change=lambda change: self.clocks.wake() if self.clocks else None,
        )
        incidents = self.incidents
        add_threaded(server, blocking, lambda s: incidents_pb2_grpc.add_IncidentServiceServicer_to_server(incidents, s))  # type: ignore[no-untyped-call]
        add_threaded(server, blocking, lambda s: health_pb2_grpc.add_HealthServicer_to_server(self.health, s))
        services = [
            RESPONSE_SERVICE,
            INCIDENT_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        if c.admin_token:
            admin = AdminServicer(self.state, c.admin_token, self.metrics)
            add_threaded(server, blocking, lambda s: admin_pb2_grpc.add_RulesAdminServiceServicer_to_server(admin, s))  # type: ignore[no-untyped-call]
            services.append(ADMIN_SERVICE)
        reflection.enable_server_reflection(services, server)
        try:
            self.port = (
                server.add_secure_port(c.listen, credentials)
                if credentials is not None
                else server.add_insecure_port(c.listen)
            )
        except RuntimeError as exc:
            self._close_metrics()
            loop.close()
            raise StartupError(f"cannot listen on {c.listen}: {exc}") from exc
        self._server, self._loop, self._blocking = server, loop, blocking
        loop.call(server.start())
        if c.http:  # the pages and the JSON door call the same servicer, on the same rules
            # HTTP callers are known by the same identities file; open as `local` only if --http itself
            # is loopback plaintext (web/incident_door.py).
            http_incidents = copy.copy(self.incidents)
            http_incidents.identities = identity.load(
                c.identities, loopback_plaintext=credentials is None and is_loopback(c.http)
            )
            web = WebServer(c, servicer, http_incidents)
            try:
                web.start()
            except (OSError, RuntimeError) as exc:
                self.stop(0)
                raise StartupError(f"cannot serve HTTP on {c.http}: {getattr(exc, 'strerror', None) or exc}") from None
            self._web = web
            self.http_port = web.port
        log.info(
            "listening",
            address=c.listen,
            port=self.port,
            metrics_port=self.metrics_port,
            http_port=self.http_port,
            admin=bool(c.admin_token),
            tls="mutual" if c.tls_client_ca else "on" if credentials else "off",
            config=c.redacted(),
        )
        watcher = Watcher(self.state, c.watch_interval, self._stopping) if c.watch else None  # before the first load
        outcome = self.state.reload("startup")
        if not outcome.ok:
            self.stop(0)
            shown = "\n".join(outcome.errors[:20])
            raise StartupError(f"no valid rules to serve from {c.rules_dir}:\n{shown}")
        try:
            self.store.migrate()
        except StoreUnavailable as exc:  # Determine serves on; incident calls answer UNAVAILABLE until it is back
            log.warning("store_unavailable", error=exc.message)
        self.clocks = ClockLoop(
            self.store,
            self.now,
            self.metrics,
            self.bus,
            self.incidents.current_obligation,
            c.late_after,
            c.clock_interval,
            self._stopping,
            on_change=self.incidents._changed_by_clock,
        )
        self.clocks.start()
        log.info("incident_store", store=describe(self.store.url), dialect=self.store.dialect)
        self._set_health(True)
        log.info("serving", port=self.port)  # health says SERVING from here on
        if watcher is not None:
            watcher.start()
            self._watcher = watcher

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING), let in-flight calls finish within the grace period."""
        self._stopping.set()
        self.bus.notify()  # watchers see the stop at once
        self._set_health(False)
        grace = self.config.grace_seconds if grace is None else grace
        if self._server is not None or self._web is not None:
            log.info("draining", grace_seconds=grace)
        server, loop = self._server, self._loop
        stopped = (
            asyncio.run_coroutine_threadsafe(server.stop(grace), loop.loop)
            if server is not None and loop is not None
            else None
        )
        if self._web is not None:  # drains while gRPC does
            self._web.stop(grace)
            self._web = None
        if stopped is not None:
            stopped.result()
            self._server = None
        if loop is not None:
            loop.close()
            self._loop = None
        if self._blocking is not None:  # calls the loop left open are ended, which wakes their handlers
            self._blocking.close()
            self._blocking = None
        if self.clocks is not None:
            self.clocks.stop()
            self.clocks = None
        self.store.close()
        self._close_metrics()
        log.info("stopped")

    def _close_metrics(self) -> None:
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
            self._metrics_httpd = None


def run(config: Config, on_ready: Callable[[Service], None] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads. Returns the process exit code.

    `on_ready` is called once the service is SERVING and its signal handlers are set (workers.py
    uses it to tell the supervisor)."""
    service = Service(config)
    stop: list[int] = []  # the stopping signals received
    reloads = SignalReloads(service.state)

    # Handlers go in before the first load, which can take a while: a SIGHUP then reloads once the
    # service is up, and a SIGTERM stops it as soon as the load ends, instead of killing the process.
    # A handler runs on the main thread between two bytecodes of whatever it was doing, and a second
    # signal can interrupt the first handler: a handler that takes a lock (Event.set, a log line)
    # can deadlock the main thread on a lock it already holds. These take none.
    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    def on_hup(signum: int, frame: FrameType | None) -> None:
        reloads.request()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        service.start()
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        return 1
    reloads.start()
    if on_ready is not None:
        on_ready(service)
    while not stop:
        time.sleep(0.5)  # a signal interrupts the sleep; its handler runs at once
    log.info("signal", signal=signal.Signals(stop[0]).name)
    reloads.close()
    service.stop()
    return 0
