"""What operators expect on the service's own registry: process and Python collectors, the build's
versions, and whether the rules directory holds what serves (the "changed, never reloaded" alert)."""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

import liandong
from liandong.engine.runtime import DurableRuntime
from liandong.server import metrics as m
from liandong.server.app import Service
from liandong.server.metrics import Metrics, RulesDirectoryCollector
from liandong.server.reload import RulesState
from support.rules import copy_demo
from support.servers import make_config


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def test_service_registry_has_process_python_and_build_info(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A Service's registry carries process_*, python_* and liandong_build_info with this process's versions."""
    copy_demo(tmp_path)
    registry = CollectorRegistry()
    Service(make_config(tmp_path), registry=registry, runtime=runtime)
    build = {
        "version": liandong.__version__,
        "durable_rules": metadata.version("durable-rules"),
        "grpcio": grpc.__version__,
        "python": platform.python_version(),
    }
    assert registry.get_sample_value(m.BUILD_INFO, build) == 1
    start = registry.get_sample_value(m.PROCESS_START_TIME)
    assert start is not None and start > 1.6e9
    assert (registry.get_sample_value(m.PROCESS_RESIDENT_MEMORY) or 0) > 0
    assert registry.get_sample_value(m.PROCESS_CPU) is not None
    assert registry.get_sample_value(m.PYTHON_GC_COLLECTIONS, {"generation": "0"}) is not None
    info = {
        "implementation": "CPython",
        "major": str(platform.python_version_tuple()[0]),
        "minor": str(platform.python_version_tuple()[1]),
        "patchlevel": str(platform.python_version_tuple()[2]),
        "version": platform.python_version(),
    }
    assert registry.get_sample_value(m.PYTHON_INFO, info) == 1


def test_rules_directory_unapplied_until_a_successful_reload(tmp_path: Path, runtime: DurableRuntime) -> None:
    """An edit sets unapplied to 1 and the change time to when it was first seen; a failed reload keeps it, a good one clears it."""
    copy_demo(tmp_path)
    clock = Clock()
    registry = CollectorRegistry()
    state = RulesState(tmp_path, runtime, Metrics(registry), run_fixtures=False, clock=clock)
    registry.register(RulesDirectoryCollector(state.directory_status))

    def read() -> tuple[float | None, float | None]:
        return registry.get_sample_value(m.RULES_DIRECTORY_UNAPPLIED), registry.get_sample_value(
            m.RULES_DIRECTORY_CHANGED
        )

    loaded_at = clock().timestamp()
    assert read() == (1, loaded_at)  # nothing serves yet
    assert state.reload("startup").ok
    clock.advance(60)
    assert read() == (0, loaded_at)

    document = tmp_path / "demo" / "2024.1.yaml"
    good = document.read_bytes()
    document.write_bytes(good + b"\nbroken: [\n")
    clock.advance(5)
    edited_at = clock().timestamp()
    assert read() == (1, edited_at)
    clock.advance(120)
    assert read() == (1, edited_at)  # still the same content: first seen then
    assert not state.reload("signal").ok
    assert read() == (1, edited_at)

    document.write_bytes(good + b"\n# a comment\n")
    clock.advance(5)
    fixed_at = clock().timestamp()
    assert state.reload("signal").ok
    assert read() == (0, fixed_at)
