"""The "try a plan" form: fields generated from a rule set's inputs (GetRuleSet), and the facts a
submitted form sends.

A field left empty is not sent, so the rules use its default and the answer lists it in `assumed`,
as for any caller. What a person types is sent as typed where it is not a number or a yes/no: the
engine refuses it with the same violation a gRPC caller gets, shown next to the field. The browser
does not check the bounds itself (the form is `novalidate`): the service is the one authority.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import struct_pb2

from liandong.v1 import liandong_pb2 as pb

FACT_PREFIX = "f."  # form names of facts, apart from the form's own (type, version, explain)


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Field:
    name: str  # the input's id, as in the facts
    form_name: str
    kind: str  # integer, number, boolean, enum, string
    meaning: str
    unit: str
    required: bool
    bounds: str  # e.g. "0 至 1000", empty when unbounded
    minimum: str
    maximum: str
    default: str  # shown as the default, empty when there is none
    choices: tuple[Choice, ...]
    value: str  # what the person submitted


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _shown(value: struct_pb2.Value, spec: pb.Input) -> str:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return "是 (true)" if value.bool_value else "否 (false)"
    if kind == "number_value":
        return _number(value.number_value)
    if kind == "string_value":
        label = next((v.label for v in spec.values if v.id == value.string_value), "")
        return f"{label} ({value.string_value})" if label else value.string_value
    return ""


def fields(ruleset: pb.RuleSet, submitted: Mapping[str, str]) -> list[Field]:
    out = []
    for spec in ruleset.inputs:
        form_name = FACT_PREFIX + spec.name
        low = _number(spec.min) if spec.HasField("min") else ""
        high = _number(spec.max) if spec.HasField("max") else ""
        bounds = f"{low or '−∞'} 至 {high or '+∞'}" if (low or high) else ""
        if spec.type == "boolean":
            choices: tuple[Choice, ...] = (Choice("true", "是 (true)"), Choice("false", "否 (false)"))
        else:
            choices = tuple(Choice(v.id, f"{v.label} ({v.id})" if v.label else v.id) for v in spec.values)
        out.append(
            Field(
                name=spec.name,
                form_name=form_name,
                kind=spec.type,
                meaning=spec.meaning,
                unit=spec.unit,
                required=spec.required,
                bounds=bounds,
                minimum=low,
                maximum=high,
                default=_shown(spec.default_value, spec) if spec.HasField("default_value") else "",
                choices=choices,
                value=submitted.get(form_name, ""),
            )
        )
    return out


def _fact(kind: str, text: str) -> float | bool | str:
    """The fact a typed value stands for: numbers and yes/no as such, anything else as the text."""
    if kind in ("integer", "number"):
        try:
            number = float(text)
        except ValueError:
            return text
        if math.isfinite(number) and number.is_integer() and kind == "integer":
            return int(number)
        return number if math.isfinite(number) else text
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


def facts(ruleset: pb.RuleSet, submitted: Mapping[str, str]) -> struct_pb2.Struct:
    """The facts of the submitted form: every non-empty field, typed as its input says."""
    out = struct_pb2.Struct()
    for spec in ruleset.inputs:
        text = submitted.get(FACT_PREFIX + spec.name, "").strip()
        if text:
            out.update({spec.name: _fact(spec.type, text)})
    return out
