"""Fixtures shared by every test (helpers are in the `support` package, never imported from here)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from liandong.document.load import parse_document
from liandong.document.model import RuleSetDocument
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from liandong.server.app import Service
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import DATA
from support.rules import rules_tree
from support.servers import channel, running, target


@pytest.fixture(scope="session")
def runtime() -> DurableRuntime:
    """One durable-rules host for the whole run, as in the service."""
    return DurableRuntime()


@pytest.fixture()
def make_doc() -> Callable[[str], RuleSetDocument]:
    """Parse document text as if it were tests/data/rules/demo/2024.1.yaml."""

    def make(text: str) -> RuleSetDocument:
        return parse_document(text.encode("utf-8"), "demo.yaml")

    return make


@pytest.fixture(scope="session")
def demo_book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(DATA / "rules", runtime)


@pytest.fixture(autouse=True, scope="session")
def _logs_to_stderr() -> None:
    """Service logs go to stderr, as `liandong serve` configures them, never into captured stdout."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))


# -- a server per module ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rules_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's rules directory: the rule sets its RULE_SETS names (see support.rules.rules_tree),
    by default fire-linkage and demo. A module or directory may define its own `rules_dir`."""
    names = getattr(request.module, "RULE_SETS", ("fire-linkage", "demo"))
    return rules_tree(tmp_path_factory.mktemp("rules"), *names)


@pytest.fixture(scope="module")
def server(rules_dir: Path, runtime: DurableRuntime) -> Iterator[Service]:
    """A service on a free loopback port over the module's rules directory, without metrics."""
    with running(rules_dir, runtime) as svc:
        yield svc


@pytest.fixture(scope="module")
def stub(server: Service) -> Iterator[pb_grpc.ResponseServiceStub]:
    """A raw ResponseService stub on that service."""
    with channel(target(server)) as ch:
        yield pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
