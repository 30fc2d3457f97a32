"""uvicorn in the service's lifecycle: bound at start (a bad address stops the start), serving on a
thread of its own, and drained with the gRPC server on stop."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Sequence

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from liandong.server.config import Config
from liandong.server.incidents import IncidentServicer
from liandong.server.servicer import ResponseServicer
from liandong.server.web import compare, door, incident_door, incident_pages, pages
from liandong.server.web.calls import Calls
from liandong.server.web.incident_door import IncidentCalls

log = structlog.get_logger("liandong.web")

START_TIMEOUT = 30.0  # seconds for uvicorn to start serving on the bound socket


def build_app(
    servicer: ResponseServicer,
    max_body_bytes: int,
    extra_routes: Sequence[BaseRoute] = (),
    incidents: IncidentServicer | None = None,
) -> Starlette:
    """The web application: the /v1 JSON door, the pages, the incidents (door and pages) when given, and extra routes."""
    calls = Calls(servicer)
    env = pages.environment()
    incident_routes: list[BaseRoute] = []
    if incidents is not None:
        incident_calls = IncidentCalls(incidents)
        incident_routes = [
            *incident_door.routes(incident_calls, max_body_bytes),
            *incident_pages.routes(incident_calls, env),
        ]
    return Starlette(
        routes=[
            *door.routes(calls, max_body_bytes),
            *pages.routes(calls, env),
            *compare.routes(calls, env),
            *incident_routes,
            *extra_routes,
        ]
    )


def _bind(address: str, reuse_port: bool) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # workers of one supervisor share the port, as they share the gRPC one
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class WebServer:
    """The HTTP port: `start` binds and serves, `stop(grace)` lets requests in flight finish."""

    def __init__(self, config: Config, servicer: ResponseServicer, incidents: IncidentServicer | None = None) -> None:
        self.config = config
        self.app = build_app(servicer, config.max_message_bytes, incidents=incidents)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind `--http` and serve; OSError if the address cannot be bound, RuntimeError if uvicorn does not start."""
        c = self.config
        sock = _bind(c.http, c.reuse_port)
        self.port = sock.getsockname()[1]
        settings = uvicorn.Config(
            self.app,
            log_config=None,  # the service's structlog lines only
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(c.grace_seconds) if c.grace_seconds else None,
            ssl_certfile=c.tls_cert or None,
            ssl_keyfile=c.tls_key or None,
            ssl_ca_certs=c.tls_client_ca or None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if c.tls_client_ca else ssl.CERT_NONE,
        )
        server = uvicorn.Server(settings)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), name="http", daemon=True)
        thread.start()
        deadline = threading.Event()
        for _ in range(int(START_TIMEOUT * 20)):  # bounded: uvicorn says when it serves by a flag only
            if server.started or not thread.is_alive():
                break
            deadline.wait(0.05)
        if not server.started:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError(f"the web server did not start on {c.http}")
        self._server, self._thread = server, thread
        log.info(
            "http_listening",
            address=c.http,
            port=self.port,
            tls="mutual" if c.tls_client_ca else "on" if c.tls_cert else "off",
        )

    def stop(self, grace: float) -> None:
        """Stop taking connections; requests in flight get `grace` seconds, then the port closes."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.config.timeout_graceful_shutdown = max(1, int(grace + 0.999)) if grace > 0 else None
        if grace <= 0:
            server.force_exit = True
        server.should_exit = True
        thread.join(grace + 10)
        self._server = self._thread = None
