"""Reading YAML safely into values that remember where they were written.

Only YAML's safe schema is constructed (no Python objects, ever). Limits that protect the service
from a hostile or broken document: the file's size, the number of nodes after alias expansion
(an "alias bomb" of nested anchors expands exponentially while its text stays small), and how
deeply values nest (every later step walks the tree recursively).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import yaml

from liandong.errors import Problem

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64  # real documents nest about 10 deep

_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})

Value = Union["LMap", "LList", "LScalar"]


@dataclass(frozen=True)
class LScalar:
    value: object
    line: int
    column: int


@dataclass(frozen=True)
class LList:
    items: tuple[Value, ...]
    line: int
    column: int


@dataclass(frozen=True)
class LMap:
    """A mapping whose keys are strings; `keys` keeps each key's own position."""

    entries: dict[str, Value]
    keys: dict[str, tuple[int, int]]
    line: int
    column: int


class SourceError(Exception):
    """The text is not a usable YAML document; carries the located problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(str(problems[0]))
        self.problems = problems


# A number with an exponent that YAML 1.1 (PyYAML) leaves as text because it lacks a decimal point.
_EXPONENT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def build(self, node: yaml.Node, active: frozenset[int], depth: int = 1) -> Value:
        self.count += 1
        if self.count > MAX_EXPANDED_NODES:
            raise SourceError(
                [
                    self._problem(
                        node, f"document expands to more than {MAX_EXPANDED_NODES} nodes (aliases?); refusing it"
                    )
                ]
            )
        if depth > MAX_DEPTH:
            raise SourceError(
                [self._problem(node, f"values nest more than {MAX_DEPTH} levels deep; refusing the document")]
            )
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if id(node) in active:
            raise SourceError([self._problem(node, "recursive alias: an anchor refers to itself")])
        if isinstance(node, yaml.ScalarNode):
            value = self._scalar(node)
            if isinstance(value, str) and node.style is None and _EXPONENT.match(value):
                value = float(value)  # YAML 1.1 reads a plain 1e-05 as text; YAML 1.2 and authors mean a number
            return LScalar(value, line, column)
        inner = active | {id(node)}
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and node.tag not in _COLLECTION_TAGS:
            raise SourceError([self._problem(node, f"unsupported tag {node.tag}: only plain YAML is read")])
        if isinstance(node, yaml.SequenceNode):
            return LList(tuple(self.build(item, inner, depth + 1) for item in node.value), line, column)
        if isinstance(node, yaml.MappingNode):
            entries: dict[str, Value] = {}
            keys: dict[str, tuple[int, int]] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        self._problem(key_node, "merge keys ('<<') are not supported; write the keys out")
                    )
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(self._problem(key_node, "a key must be plain text"))
                    continue
                key = str(self._scalar(key_node))
                if key in entries:
                    first = keys[key]
                    self.problems.append(
                        self._problem(key_node, f"duplicate key '{key}' (first written at line {first[0]})", key=key)
                    )
                    continue
                keys[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                entries[key] = self.build(value_node, inner, depth + 1)
            return LMap(entries, keys, line, column)
        raise SourceError([self._problem(node, f"unsupported YAML node {node.tag}")])

    def _scalar(self, node: yaml.ScalarNode) -> object:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise SourceError([self._problem(node, f"unreadable value: {exc}")]) from exc
        except (ValueError, OverflowError) as exc:
            # PyYAML's resolver takes 2025-13-45 and 2025-02-30 for dates; building them fails in datetime.
            raise SourceError([self._problem(node, f"'{node.value}' is not a valid date or time: {exc}")]) from None

    def _problem(self, node: yaml.Node, message: str, key: str = "") -> Problem:
        return Problem(self.path, node.start_mark.line + 1, node.start_mark.column + 1, message, key=key)


def read_file(path: Path, shown: str) -> bytes:
    """A document's bytes, never more than the limit, and never from anything but a regular file.

    The size is checked before reading (a 2 GiB sparse file must not be read to learn it is too
    big) and at most the limit plus one byte is read (it can grow meanwhile). A FIFO, device or
    socket named *.yaml is refused: opening is non-blocking, so a FIFO with no writer cannot hold
    start-up or the reload lock. OSError is left to the caller (it reports `cannot read`).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SourceError([Problem(shown, 0, 0, "is not a regular file (a FIFO, device or socket?); refusing it")])
        if info.st_size > MAX_DOCUMENT_BYTES:
            raise SourceError(
                [Problem(shown, 1, 1, f"document is {info.st_size} bytes; the limit is {MAX_DOCUMENT_BYTES}")]
            )
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_DOCUMENT_BYTES:
            chunk = os.read(fd, MAX_DOCUMENT_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_DOCUMENT_BYTES:
        raise SourceError(
            [
                Problem(
                    shown,
                    1,
                    1,
                    f"document is more than {MAX_DOCUMENT_BYTES} bytes (it grew while being read); the limit is {MAX_DOCUMENT_BYTES}",
                )
            ]
        )
    return b"".join(chunks)


def read_yaml(data: bytes, path: str) -> Value:
    """Parse one YAML document from bytes into located values, or raise SourceError."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SourceError([Problem(path, 1, 1, f"document is {len(data)} bytes; the limit is {MAX_DOCUMENT_BYTES}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SourceError([Problem(path, line, column, "not valid UTF-8 text")]) from exc
    text = text.removeprefix("\ufeff")
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or str(exc)
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            reason += f" ({exc.context} at line {exc.context_mark.line + 1})"  # e.g. where the open quote is
        raise SourceError([Problem(path, line, column, f"YAML syntax error: {reason}")]) from exc
    except yaml.YAMLError as exc:
        raise SourceError([Problem(path, 1, 1, f"YAML error: {exc}")]) from exc
    except RecursionError:  # PyYAML composes recursively: thousands of nested brackets exhaust the stack
        line = _deepest_line(text)
        raise SourceError(
            [Problem(path, line, 1, f"values nest more than {MAX_DEPTH} levels deep; refusing the document")]
        ) from None
    if not nodes or nodes[0] is None:
        raise SourceError([Problem(path, 1, 1, "document is empty")])
    if len(nodes) > 1:
        second = nodes[1]
        raise SourceError(
            [Problem(path, second.start_mark.line + 1, 1, "one file holds one document; found a second ('---')")]
        )
    builder = _Builder(path)
    value = builder.build(nodes[0], frozenset())
    if builder.problems:
        raise SourceError(builder.problems)
    return value


def _deepest_line(text: str) -> int:
    """Where the nesting is: the line where flow brackets first nest deeper than MAX_DEPTH, else
    the most indented line."""
    depth = 0
    lines = text.splitlines() or [""]
    for number, line in enumerate(lines, 1):
        for char in line:
            depth += 1 if char in "[{" else -1 if char in "]}" else 0
            if depth > MAX_DEPTH:
                return number
    return max(range(len(lines)), key=lambda i: len(lines[i]) - len(lines[i].lstrip(" "))) + 1


def plain(value: Value) -> object:
    """The value without positions: dicts, lists and scalars (dates become ISO strings)."""
    if isinstance(value, LMap):
        return {k: plain(v) for k, v in value.entries.items()}
    if isinstance(value, LList):
        return [plain(v) for v in value.items]
    scalar = value.value
    if hasattr(scalar, "isoformat"):
        return scalar.isoformat()
    return scalar
