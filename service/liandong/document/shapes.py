"""Readers for the shapes of located YAML values (mapping, list, text, id, number, date, citation).

The rule document's grammar (`parse`) and the fixtures' (`fixtures`) are both written with these, so
a value of the wrong shape is reported the same way, at its line and column, wherever it stands.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import TypeVar

from liandong.document.model import Citation, Pos
from liandong.document.source import LList, LMap, LScalar, Value
from liandong.errors import Problem
from liandong.suggest import closest

T = TypeVar("T")


def describe(value: Value) -> str:
    """What a value is, as a problem message names it ('a mapping', 'int 3')."""
    if isinstance(value, LMap):
        return "a mapping"
    if isinstance(value, LList):
        return "a list"
    if value.value is None:
        return "empty"
    return f"{type(value.value).__name__} {value.value!r}"


class ShapeReader:
    """Reads values of one file; every problem found is kept in `problems`, located."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.ruleset = ""  # named in every problem once the document has said it
        self.default_document = ""  # the plan a bare citation cites

    # -- reporting -----------------------------------------------------------------------------
    def problem(
        self, at: Value | tuple[int, int], message: str, key: str = "", rule_id: str = "", suggestion: str = ""
    ) -> None:
        line, column = at if isinstance(at, tuple) else (at.line, at.column)
        self.problems.append(
            Problem(
                self.path, line, column, message, key=key, ruleset=self.ruleset, rule_id=rule_id, suggestion=suggestion
            )
        )

    def pos(self, value: Value, key: str) -> Pos:
        return Pos(self.path, value.line, value.column, key)

    # -- shapes --------------------------------------------------------------------------------
    def mapping(
        self,
        value: Value | None,
        where: str,
        allowed: tuple[str, ...] | None,
        required: tuple[str, ...] = (),
        rule_id: str = "",
    ) -> LMap | None:
        if value is None:
            return None
        if not isinstance(value, LMap):
            self.problem(value, f"{where} must be a mapping, not {describe(value)}", key=where, rule_id=rule_id)
            return None
        for key, at in value.keys.items():
            if allowed is not None and key not in allowed:
                self.problem(
                    at,
                    f"{where} has unknown key '{key}'",
                    key=f"{where}.{key}",
                    rule_id=rule_id,
                    suggestion=closest(key, allowed),
                )
        for key in required:
            if key not in value.entries:
                self.problem(value, f"{where} is missing '{key}'", key=f"{where}.{key}", rule_id=rule_id)
        return value

    def listing(self, value: Value | None, where: str, rule_id: str = "") -> tuple[Value, ...]:
        if value is None:
            return ()
        if isinstance(value, LScalar) and value.value is None:
            return ()
        if not isinstance(value, LList):
            self.problem(value, f"{where} must be a list, not {describe(value)}", key=where, rule_id=rule_id)
            return ()
        return value.items

    def scalar(
        self, value: Value | None, where: str, check: Callable[[object], bool], expected: str, rule_id: str = ""
    ) -> object | None:
        if value is None:
            return None
        if isinstance(value, LScalar) and check(value.value):
            return value.value
        hint = " (quote it)" if expected == "text" and isinstance(value, LScalar) and value.value is not None else ""
        self.problem(value, f"{where} must be {expected}, not {describe(value)}{hint}", key=where, rule_id=rule_id)
        return None

    def text(self, value: Value | None, where: str, rule_id: str = "", allow_empty: bool = False) -> str | None:
        got = self.scalar(value, where, lambda v: isinstance(v, str), "text", rule_id)
        if isinstance(got, str):
            if not got.strip() and not allow_empty and value is not None:
                self.problem(value, f"{where} must not be empty", key=where, rule_id=rule_id)
                return None
            return got
        return None

    def ident(self, value: Value | None, where: str, pattern: re.Pattern[str], rule_id: str = "") -> str | None:
        got = self.text(value, where, rule_id)
        if got is not None and not pattern.match(got) and value is not None:
            self.problem(
                value, f"{where} '{got}' is not a valid id (expected {pattern.pattern})", key=where, rule_id=rule_id
            )
            return None
        return got

    def id_list(self, value: Value | None, where: str, rule_id: str = "") -> tuple[tuple[str, Value], ...]:
        out: list[tuple[str, Value]] = []
        for item in self.listing(value, where, rule_id):
            got = self.text(item, f"{where} item", rule_id)
            if got is not None:
                out.append((got, item))
        return tuple(out)

    def refs(self, field: str, pairs: tuple[tuple[str, Value], ...]) -> dict[str, Pos]:
        return {f"{field}:{ident}": self.pos(at, field) for ident, at in pairs}

    def number(self, value: Value | None, where: str) -> float | int | None:
        got = self.scalar(value, where, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
        if isinstance(got, float) and not math.isfinite(got):
            assert value is not None
            self.problem(value, f"{where} must be finite", key=where)
            return None
        return got if isinstance(got, (int, float)) else None

    def date(self, value: Value | None, where: str) -> dt.date | None:
        if value is None:
            return None
        if isinstance(value, LScalar):
            if isinstance(value.value, dt.datetime):
                return value.value.date()
            if isinstance(value.value, dt.date):
                return value.value
            if isinstance(value.value, str):
                try:
                    return dt.date.fromisoformat(value.value)
                except ValueError:
                    pass
        self.problem(value, f"{where} must be a date YYYY-MM-DD, not {describe(value)}", key=where)
        return None

    def citations(self, value: Value | None, where: str, rule_id: str = "") -> tuple[Citation, ...] | None:
        """One citation, or a list of them (`citation: [第四条(二)3, 第八条]`); None if any is unusable."""
        if value is None:
            return None
        if isinstance(value, LList):
            if not value.items:
                self.problem(value, f"{where} is an empty list: cite at least one clause", key=where, rule_id=rule_id)
                return None
            found = [self._citation(item, f"{where}[{i}]", rule_id) for i, item in enumerate(value.items)]
            if any(c is None for c in found):
                return None
            listed = tuple(c for c in found if c is not None)
            seen: set[Citation] = set()
            for c, item in zip(listed, value.items, strict=True):
                if c in seen:
                    self.problem(item, f"{where} cites '{c}' twice", key=where, rule_id=rule_id)
                seen.add(c)
            return listed
        one = self._citation(value, where, rule_id)
        return (one,) if one is not None else None

    def _citation(self, value: Value, where: str, rule_id: str = "") -> Citation | None:
        if isinstance(value, LScalar):
            clause = self.text(value, where, rule_id)
            return Citation(self.default_document, clause) if clause else None
        m = self.mapping(value, where, ("document", "clause"), ("clause",), rule_id)
        if m is None:
            return None
        clause = self.text(m.entries.get("clause"), f"{where}.clause", rule_id)
        document = (
            self.text(m.entries.get("document"), f"{where}.document", rule_id)
            if "document" in m.entries
            else self.default_document
        )
        if clause is None or document is None:
            return None
        return Citation(document, clause)

    def each(self, value: Value | None, where: str, parse: Callable[[Value, str], T | None]) -> tuple[T, ...]:
        out = []
        for index, item in enumerate(self.listing(value, where)):
            # Name the entry by its id (or level code) too: `obligations[9] 'reply_20min'.within`.
            ident = item.entries.get("id") or item.entries.get("code") if isinstance(item, LMap) else None
            named = f" '{ident.value}'" if isinstance(ident, LScalar) and isinstance(ident.value, str) else ""
            got = parse(item, f"{where}[{index}]{named}")
            if got is not None:
                out.append(got)
        return tuple(out)
