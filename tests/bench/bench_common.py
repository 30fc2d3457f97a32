"""Shared pieces of the benchmark: incident pools, ports, process memory and percentiles.

Benchmarks are measurements, not tests: nothing here asserts a time. Files are named bench_*.py
so pytest never collects them.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # tests/: the benchmark uses the tests' support package
from support.data import BUNDLED as RULES  # noqa: E402, F401 - for the bench scripts
from support.data import FIRE_FLAGS, ROOT  # noqa: E402, F401 - ROOT for the bench scripts
from support.processes import free_port  # noqa: E402, F401 - for the bench scripts
from support.servers import ADMIN_TOKEN  # noqa: E402, F401 - for the bench scripts

PYTHON = sys.executable
LIANDONG = str(Path(sys.executable).with_name("liandong"))

Facts = dict[str, object]


def fire_facts(rng: random.Random) -> Facts:
    """A fire incident spread over every grade and most situations (every value in range)."""
    facts: Facts = {
        "deaths": rng.choice([0, 0, 1, 2, 3, 5, 9, 10, 12, 29, 30, 45]),
        "serious_injuries": rng.choice([0, 0, 3, 9, 10, 20, 49, 50, 80, 100, 130]),
        "direct_loss_yuan": float(rng.choice([0, 5e5, 9.9e6, 1e7, 3e7, 5e7, 9e7, 1e8, 2e8])),
    }
    for flag in FIRE_FLAGS:
        if rng.random() < 0.4:
            facts[flag] = rng.random() < 0.7
    return facts


def flood_facts(rng: random.Random) -> Facts:
    facts: Facts = {
        "flood_magnitude": rng.choice(["none", "general", "considerable", "major", "extraordinary"]),
        "dike_status": rng.choice(["normal", "normal", "danger", "major_danger", "breach"]),
        "dike_section": rng.choice(["important", "general", "tributary"]),
        "rain_24h_mm": float(rng.choice([0, 20, 50, 100, 250])),
        "river_affects_neighbours": rng.random() < 0.3,
    }
    if rng.random() < 0.6:
        facts["water_level_m"] = round(rng.uniform(450.0, 455.5), 2)
    if rng.random() < 0.4:
        facts["reservoir_size"] = rng.choice(["small", "medium", "large"])
        facts["reservoir_status"] = rng.choice(["normal", "danger", "severe_danger", "collapse"])
        facts["reservoir_key"] = rng.random() < 0.5
    return facts


def mass_incident_facts(rng: random.Random) -> Facts:
    facts: Facts = {"participants": rng.choice([0, 10, 49, 50, 99, 100, 300, 500, 1000, 5000])}
    if rng.random() < 0.5:
        facts["local_forces_can_control"] = rng.random() < 0.6
    if rng.random() < 0.5:
        facts["category"] = rng.choice(
            ["block_traffic", "fights_and_riots", "strikes_petitions_demonstrations", "large_events"]
        )
    if rng.random() < 0.3:
        facts["violent_crime"] = True
    if rng.random() < 0.3:
        facts["needs_cross_region"] = rng.random() < 0.5
    return facts


# ruleset id -> (incident type, generator)
GENERATORS: dict[str, tuple[str, Callable[[random.Random], Facts]]] = {
    "fire-linkage": ("fire", fire_facts),
    "flood-control": ("flood", flood_facts),
    "township-mass-incident": ("mass_incident", mass_incident_facts),
}


def incident_pool(ruleset: str, size: int, seed: int = 5) -> list[tuple[str, Facts]]:
    """`size` varied incidents for one bundled rule set, the same for a given seed."""
    incident_type, make = GENERATORS[ruleset]
    rng = random.Random(f"{ruleset}:{seed}")
    return [(incident_type, make(rng)) for _ in range(size)]


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def summary_us(seconds: Sequence[float]) -> dict[str, float]:
    """Median and p99 in microseconds of a list of durations in seconds."""
    values = sorted(seconds)
    return {
        "n": len(values),
        "median_us": round(statistics.median(values) * 1e6, 1),
        "p99_us": round(percentile(values, 0.99) * 1e6, 1),
        "mean_us": round(statistics.fmean(values) * 1e6, 1),
    }


def wait_serving(target: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> float:
    """Poll grpc.health.v1 until SERVING; the monotonic time it answered SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before SERVING")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic()
            except grpc.RpcError:
                pass
            time.sleep(0.005)
    raise TimeoutError(f"{target} not SERVING within {timeout} s")


def stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), out.get("PYTHONPATH", "")) if p)
    return out
