"""Comparison operators: the symbolic ones and the Chinese statutory words.

The statutory words mean different things under different conventions (see
../shared/reference/grading.md): 民法典 第一千二百五十九条 counts the number itself in 以上/以下/以内
and not in 超过/不满; the 2007 accident and fire grading standards keep 以上 inclusive but make 以下
exclusive, so that adjacent grades never overlap.
"""

from __future__ import annotations

from liandong.document.model import Boundary

SYMBOLIC = ("gte", "gt", "lte", "lt", "eq", "ne", "in", "between")
ORDERING = frozenset({"gte", "gt", "lte", "lt", "between"})

_WORDS: dict[str, dict[Boundary, str]] = {
    "以上": {Boundary.CIVIL_CODE: "gte", Boundary.ACCIDENT_GRADING: "gte"},
    "以下": {Boundary.CIVIL_CODE: "lte", Boundary.ACCIDENT_GRADING: "lt"},
    # The grading standards redefine only 以上 and 以下; 以内 keeps its general meaning.
    "以内": {Boundary.CIVIL_CODE: "lte", Boundary.ACCIDENT_GRADING: "lte"},
    "超过": {Boundary.CIVIL_CODE: "gt", Boundary.ACCIDENT_GRADING: "gt"},
    "不满": {Boundary.CIVIL_CODE: "lt", Boundary.ACCIDENT_GRADING: "lt"},
}

WORDS = tuple(_WORDS)
ALL_OPERATORS = SYMBOLIC + WORDS

NEGATION = {"gte": "lt", "gt": "lte", "lte": "gt", "lt": "gte", "eq": "ne", "ne": "eq"}

SYMBOLS = {"gte": "≥", "gt": ">", "lte": "≤", "lt": "<", "eq": "=", "ne": "≠", "in": "∈", "between": "∈"}


def symbolic(word: str, boundary: Boundary) -> str:
    """The symbolic operator a word stands for under a boundary convention."""
    if word in SYMBOLIC:
        return word
    return _WORDS[word][boundary]
