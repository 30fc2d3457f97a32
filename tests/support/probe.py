"""A rule set written inline in a test module, and its answer to one probe incident."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from liandong.document.load import parse_document
from liandong.document.model import RuleSetDocument
from liandong.engine.result import Determination, Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook

Fixture = Callable[..., Any]


def inline_rule_set(document: str, name: str, facts: dict[str, object]) -> tuple[Fixture, Fixture, Fixture]:
    """Module fixtures `doc`, `book` and `det`: the document parsed, its rule book, and its answer to an
    incident of type `probe` with `facts`. Assign them at module level: `doc, book, det = inline_rule_set(...)`."""

    @pytest.fixture(scope="module")
    def doc() -> RuleSetDocument:
        return parse_document(document.encode("utf-8"), name)

    @pytest.fixture(scope="module")
    def book(doc: RuleSetDocument, runtime: DurableRuntime) -> RuleBook:
        return RuleBook([doc], runtime)

    @pytest.fixture(scope="module")
    def det(book: RuleBook) -> Determination:
        return book.determine(Incident(type="probe", facts=facts, id="i1"))

    return doc, book, det
