"""The published JSON Schema of the rule document (rules/schema/) stays in step with the parser:
the same keys in every part, and it accepts every bundled and test document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from liandong.document import parse
from liandong.document.source import plain, read_yaml
from liandong.document.words import ALL_OPERATORS
from support.data import BUNDLED, DEMO
from support.rules import replace_once

SCHEMA_PATH = BUNDLED / "schema" / "liandong-rule-document.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
DEFS = SCHEMA["$defs"]
DOCUMENTS = sorted(p for p in BUNDLED.glob("*/*.yaml") if not p.name.endswith(".fixtures.yaml")) + [DEMO]


def _keys(part: dict[str, Any]) -> set[str]:
    return set(part["properties"])


@pytest.mark.parametrize(
    ("part", "keys"),
    [
        ("document", parse.TOP_KEYS),
        ("input", parse.INPUT_KEYS),
        ("then", parse.THEN_KEYS),
        ("level", parse.LEVEL_KEYS),
        ("unit", parse.UNIT_KEYS),
        ("group", parse.GROUP_KEYS),
        ("obligation", parse.OBLIGATION_KEYS),
        ("rule", parse.RULE_KEYS),
        ("check", parse.CHECK_KEYS),
        ("accept", parse.ACCEPT_KEYS),
    ],
)
def test_schema_keys_are_the_parser_keys(part: str, keys: tuple[str, ...]) -> None:
    """Each part of the schema allows exactly the keys the parser reads, and only those."""
    node = SCHEMA if part == "document" else DEFS[part]
    assert node["additionalProperties"] is False
    assert _keys(node) == set(keys)


def test_schema_required_keys_are_the_parser_required_keys() -> None:
    """The document's required keys are the parser's."""
    assert set(SCHEMA["required"]) == set(parse.TOP_REQUIRED)
    assert set(SCHEMA["properties"]["source"]["properties"]) == set(parse.SOURCE_KEYS)
    assert set(DEFS["then"]["properties"]["commanders"]["items"]["properties"]) == set(parse.COMMANDER_KEYS)


def test_schema_operators_are_the_parser_operators() -> None:
    """Every operator (symbolic and statutory word) is in the schema, and no other."""
    assert set(DEFS["comparison"]["oneOf"][1]["properties"]) == set(ALL_OPERATORS)


def _instance(path: Path) -> object:
    # Dates as text, as an editor's YAML-to-JSON view shows them.
    return json.loads(json.dumps(plain(read_yaml(path.read_bytes(), str(path))), default=str))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_document_is_valid_against_the_schema(path: Path) -> None:
    """The bundled documents and the test demo document pass the schema."""
    jsonschema.validate(_instance(path), SCHEMA)


def test_schema_refuses_a_misspelt_key(tmp_path: Path) -> None:
    """A key the parser refuses (a typo) is refused by the schema too, as an editor would show it."""
    path = tmp_path / "x.yaml"
    path.write_text(replace_once(DEMO.read_text(encoding="utf-8"), "boundary:", "boundry:"), encoding="utf-8")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_instance(path), SCHEMA)
