"""Shared helpers: building small rule documents and engines for tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sys

import pytest
import structlog
import yaml

from liandong.document.load import parse_document
from liandong.document.model import RuleSetDocument
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CASES = Path(__file__).resolve().parent / "cases"
DEMO = DATA / "rules" / "demo" / "2024.1.yaml"


def load_cases(name: str) -> list[dict[str, object]]:
    """Golden cases from tests/cases/NAME.yaml (safe loader only)."""
    data = yaml.safe_load((CASES / name).read_text(encoding="utf-8"))
    cases: list[dict[str, object]] = data["cases"]
    return cases


pytest_plugins = ["service_support"]  # `server` and `stub` for modules that define `rules_dir`


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
