"""A Service running in this process, on a free loopback port, and how to reach it.

Every server binds 127.0.0.1 with port 0 (the kernel picks a free one). Metrics are off unless a
test asks for them with metrics_listen=f"{LOOPBACK}:0".
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server import config
from liandong.server.app import Service
from liandong.v1 import admin_pb2_grpc
from liandong.v1 import liandong_pb2_grpc as pb_grpc

LOOPBACK = "127.0.0.1"
ADMIN_TOKEN = "s3cret-admin-token-0123456789"  # at least 16 characters, as config requires
RESPONSE_SERVICE = "liandong.v1.ResponseService"
ADMIN_SERVICE = "liandong.v1.RulesAdminService"
HEALTH_SERVICE = "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def make_config(rules_dir: Path, **flags: object) -> config.Config:
    """The service's configuration for these flags, on a free loopback port, metrics off unless asked."""
    merged: dict[str, object] = {"listen": f"{LOOPBACK}:0", "metrics_listen": "", "rules_dir": str(rules_dir)}
    # The incident store's SQLite file goes to a temporary directory, never into the working tree.
    merged["data_dir"] = tempfile.mkdtemp(prefix="liandong-data-")
    merged.update(flags)
    return config.load(merged, env={})


@contextlib.contextmanager
def running(
    rules_dir: Path, runtime: DurableRuntime, registry: CollectorRegistry | None = None, **flags: object
) -> Iterator[Service]:
    """A started Service on a free loopback port; stopped (grace 0) when the block ends."""
    svc = Service(
        make_config(rules_dir, **flags),
        registry=registry if registry is not None else CollectorRegistry(),
        runtime=runtime,
    )
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(0)


def target(svc: Service) -> str:
    return f"{LOOPBACK}:{svc.port}"


@contextlib.contextmanager
def channel(address: str) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(address)
    try:
        yield ch
    finally:
        ch.close()


def stubs(
    ch: grpc.Channel,
) -> tuple[pb_grpc.ResponseServiceStub, admin_pb2_grpc.RulesAdminServiceStub, health_pb2_grpc.HealthStub]:
    return pb_grpc.ResponseServiceStub(ch), admin_pb2_grpc.RulesAdminServiceStub(ch), health_pb2_grpc.HealthStub(ch)  # type: ignore[no-untyped-call]


def health_status(ch: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(ch)  # type: ignore[no-untyped-call]
    response: health_pb2.HealthCheckResponse = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)
