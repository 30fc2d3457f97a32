"""Fixtures for the reliability tests (helpers are in support.py), and the soak's head start.

The one-million-decision soak (test_soak.py) takes minutes of one core. So that it does not add
those minutes to the run, its process starts as soon as the tests are collected, the test that
checks it is moved to the end of the run, and the rest of the suite runs meanwhile. The process is
killed at the end of the session whatever happened.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from reliability import SOAK_DECISIONS
from support.certs import Certs, make_certs
from support.data import TESTS
from support.rules import rules_tree

SOAK_TEST = "reliability/test_soak.py::test_one_million_decisions_in_one_process"
SOAK = pytest.StashKey[tuple[subprocess.Popen[bytes], Path]]()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a rogue CA with its client."""
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture()
def rules_dir(tmp_path: Path) -> Path:
    """A writable rules directory holding the demo rule set."""
    return rules_tree(tmp_path / "rules", "demo")


@pytest.fixture()
def soak_run(request: pytest.FixtureRequest) -> tuple[subprocess.Popen[bytes], Path]:
    """The soak process started at collection, and the file its progress lines go to."""
    run = request.config.stash.get(SOAK, None)
    if run is None:  # collected without the hook (e.g. by node id through another root): start it now
        run = start_soak(request.config)
    return run


def start_soak(config: pytest.Config) -> tuple[subprocess.Popen[bytes], Path]:
    handle, name = tempfile.mkstemp(prefix="liandong-soak-", suffix=".jsonl")
    out = open(handle, "wb")  # noqa: SIM115 - the child owns it; closed below
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "reliability" / "soak.py"),
                "--rules",
                str(TESTS / "data" / "rules"),
                "--decisions",
                str(SOAK_DECISIONS),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        out.close()
    config.stash[SOAK] = (proc, Path(name))
    return proc, Path(name)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only start the soak if it will be checked
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    soak = [item for item in items if item.nodeid.endswith(SOAK_TEST)]
    if soak and not config.option.collectonly:
        items[:] = [item for item in items if item not in soak] + soak
        start_soak(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(SOAK, None)
    if run is not None:
        proc, path = run
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        path.unlink(missing_ok=True)
