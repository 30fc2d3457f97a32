"""The image's install steps, run on this machine as deploy/Dockerfile runs them: the builder
stage's commands make the wheels, the runtime stage's pip command installs them into a fresh venv
with no index (as the slim image has no compiler, nothing may need building there), and the
installed `liandong` serves the bundled rules. (No container runtime here: the commands are read
from the Dockerfile and run as they are written, paths moved into a temporary directory.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from support.data import ROOT
from support.processes import find_event, log_events, wait_until

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def stages() -> list[list[str]]:
    """Each stage's RUN commands, continuation lines joined, in order."""
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    joined: list[str] = []
    current = ""
    for line in lines:
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    out: list[list[str]] = []
    for instruction in joined:
        if instruction.startswith("FROM "):
            out.append([])
        elif instruction.startswith("RUN ") and out:
            out[-1].append(instruction[4:].strip())
    return out


def test_dockerfile_has_a_builder_and_a_runtime_stage_without_a_compiler() -> None:
    """Two stages: the builder installs gcc and makes the wheels; the runtime installs only those wheels, with no index."""
    builder, runtime = stages()
    assert any("gcc" in r for r in builder) and not any("gcc" in r or "apt-get" in r for r in runtime)
    assert any("tools/engine_wheel.py --copy-to /wheels" in r for r in builder)
    assert len(runtime) == 1 and "--no-index" in runtime[0] and "--mount=type=bind,from=builder" in runtime[0]


@pytest.mark.slow
def test_the_images_install_steps_install_and_serve(tmp_path: Path) -> None:
    """The builder's commands make every wheel, the runtime's pip command installs them into a fresh venv without an index, and that `liandong` serves the bundled rules."""
    builder, runtime = stages()
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    for part in ("tools", "proto", "service"):
        shutil.copytree(
            ROOT / part, src / part, ignore=shutil.ignore_patterns("*_pb2*.py*", "__pycache__", "*.egg-info")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    # The builder: a fresh venv of this interpreter (the image's is a bare python:slim). Its compiler
    # step is the machine's own gcc; the engine wheel comes from the set-up's cache, same ABI and patch.
    builder_venv = tmp_path / "builder-venv"
    venv.create(builder_venv, with_pip=True)
    builder_env = {**os.environ, "PATH": f"{builder_venv / 'bin'}:{os.environ['PATH']}"}
    builder_env.pop("VIRTUAL_ENV", None)
    for command in builder:
        if command.startswith("apt-get"):
            continue  # the compiler: this machine has one (the engine wheel is taken from the set-up's cache)
        command = command.replace("/wheels", str(wheels))
        done = subprocess.run(
            ["sh", "-c", command], cwd=src, env=builder_env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    built = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}
    assert {"liandong", "durable_rules", "grpcio", "protobuf", "prometheus_client", "structlog"} <= built
    assert not list(wheels.glob("*.tar.gz")), "the runtime stage cannot build an sdist"
    engines = [w.name for w in wheels.glob("durable_rules-*.whl")]
    assert len(engines) == 1 and "+liandong" in engines[0], f"the patched engine, not PyPI's sdist: {engines}"

    fresh = tmp_path / "image-venv"
    venv.create(fresh, with_pip=True)
    command = re.sub(r"--mount=\S+\s*", "", runtime[0]).replace("/tmp/wheels", str(wheels))
    runtime_env = {"PATH": f"{fresh / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["sh", "-c", command], cwd=tmp_path, env=runtime_env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    version = subprocess.run(
        [
            str(fresh / "bin" / "python"),
            "-c",
            "from importlib.metadata import version; print(version('durable-rules'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=runtime_env,
    )
    assert "+liandong" in version.stdout, version.stdout + version.stderr

    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(fresh / "bin" / "liandong"),
                "serve",
                "--rules-dir",
                str(ROOT / "rules"),
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "",
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=runtime_env,
        )
        try:

            def loaded() -> bool:
                events = log_events(log_path.read_text(encoding="utf-8", errors="replace"))
                return find_event(events, "rules_reloaded", trigger="startup") is not None or proc.poll() is not None

            assert wait_until(loaded, 120), log_path.read_text(errors="replace")[-3000:]
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    events = log_events(log_path.read_text(encoding="utf-8", errors="replace"))
    reloaded = find_event(events, "rules_reloaded", trigger="startup")
    assert reloaded is not None and set(reloaded["rulesets"]) >= {"fire-linkage", "flood-control"}  # type: ignore[arg-type]
    assert proc.returncode == 0
