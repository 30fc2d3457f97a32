"""Reading YAML safely: limits, encodings and syntax errors are refused with a location."""

from __future__ import annotations

import re

import pytest

from liandong.document.load import parse_document
from liandong.document.source import MAX_DOCUMENT_BYTES, LMap, read_yaml
from liandong.errors import RuleDocumentInvalid


def problems_of(data: bytes) -> list[str]:
    with pytest.raises(RuleDocumentInvalid) as caught:
        parse_document(data, "bad.yaml")
    return [str(p) for p in caught.value.problems]


def test_alias_bomb_is_refused() -> None:
    """Nested anchors that expand exponentially are refused instead of expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    problems = problems_of("\n".join(lines).encode())
    assert len(problems) == 1
    assert re.match(r"bad\.yaml:[1-9]:\d+: document expands to more than 100000 nodes", problems[0]), (
        problems
    )  # located within the 9 lines


def test_recursive_alias_is_refused() -> None:
    """An anchor that contains itself is refused, not followed forever."""
    problems = problems_of(b"a: &x [1, *x]\n")
    assert problems == ["bad.yaml:1:4: recursive alias: an anchor refers to itself"]  # at the anchor


def test_oversized_document_is_refused() -> None:
    """A document over the size limit is refused before it is parsed."""
    problems = problems_of(b"# " + b"x" * MAX_DOCUMENT_BYTES + b"\n")
    assert problems == [f"bad.yaml:1:1: document is {MAX_DOCUMENT_BYTES + 3} bytes; the limit is {MAX_DOCUMENT_BYTES}"]


def test_non_utf8_is_located() -> None:
    """Bytes that are not UTF-8 are reported at their line and column."""
    problems = problems_of(b"ruleset: demo\ntitle: \xff\xfe\n")
    assert problems == ["bad.yaml:2:8: not valid UTF-8 text"]


def test_syntax_error_is_located() -> None:
    """A YAML syntax error names the line where the parser stopped."""
    problems = problems_of(b"ruleset: demo\nrules: [a, b\nversion: 1\n")
    assert len(problems) == 1 and problems[0].startswith("bad.yaml:3:8: YAML syntax error"), problems


def test_python_object_tags_are_not_constructed() -> None:
    """A python/object tag is an error, never an object."""
    problems = problems_of(b"ruleset: !!python/object/apply:os.system ['true']\n")
    assert problems == [
        "bad.yaml:1:10: unsupported tag tag:yaml.org,2002:python/object/apply:os.system: only plain YAML is read"
    ]  # at the tag


def test_two_documents_in_one_file_are_refused() -> None:
    """One file holds exactly one document."""
    problems = problems_of(b"a: 1\n---\nb: 2\n")
    assert problems == ["bad.yaml:3:1: one file holds one document; found a second ('---')"]  # where the second starts


def test_empty_document_is_refused() -> None:
    """An empty file is reported as empty."""
    assert problems_of(b"# nothing\n") == ["bad.yaml:1:1: document is empty"]


def test_positions_are_one_based() -> None:
    """Lines and columns of keys and values count from 1, as editors do."""
    value = read_yaml(b"a:\n  b: 1\n", "x.yaml")
    assert isinstance(value, LMap)
    inner = value.entries["a"]
    assert isinstance(inner, LMap)
    assert inner.keys["b"] == (2, 3)


def test_python_scalar_tags_are_not_constructed() -> None:
    """A python tag on a scalar is an error too."""
    problems = problems_of(b"ruleset: !!python/name:os.system ''\n")
    assert len(problems) == 1 and problems[0].startswith("bad.yaml:1:10: unreadable value"), problems  # at the tag
