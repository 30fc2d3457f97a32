"""Checking an incident's facts against a rule set's inputs, before any rule sees them.

Callers send facts as JSON or protobuf Struct values, where every number may arrive as a float:
an integer input therefore accepts 3.0 as 3, but never 3.5, a bool, NaN or infinity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from liandong.document.model import InputSpec, InputType, RuleSetDocument
from liandong.engine import trace
from liandong.errors import FieldViolation, InvalidIncident
from liandong.suggest import closest

MAX_FACTS = 256
PRESENT_PREFIX = "_present_"  # input ids start with a letter, so these never collide with one


class NoValue:
    """A protobuf Value with no kind set at all. JSON null arrives as null_value (absent); this only
    comes from a sender that built the Value wrongly (e.g. field names its library does not know),
    so it is refused rather than quietly taken as absent."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE = NoValue()


def _describe(value: object) -> str:
    if isinstance(value, NoValue):
        return "a value with no kind set (send null as null_value)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def coerce(spec: InputSpec, value: object) -> tuple[object, FieldViolation | None]:
    """The value in the input's canonical form, or the reason it does not fit."""
    name = spec.name
    if spec.type is InputType.BOOLEAN:
        if isinstance(value, bool):
            return value, None
        return None, FieldViolation(name, f"must be true or false, not {_describe(value)}", "wrong_type")
    if spec.type in (InputType.INTEGER, InputType.NUMBER):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, FieldViolation(name, f"must be a number, not {_describe(value)}", "wrong_type")
        if isinstance(value, float) and not math.isfinite(value):
            return None, FieldViolation(name, "must be a finite number, not NaN or infinity", "not_finite")
        number: int | float = value
        if spec.type is InputType.INTEGER and isinstance(value, float):
            if not value.is_integer():
                return None, FieldViolation(name, f"must be a whole number, not {value}", "wrong_type")
            number = int(value)
        if spec.minimum is not None and number < spec.minimum:
            return None, FieldViolation(name, f"{number} is below the minimum {spec.minimum:g}", "out_of_range")
        if spec.maximum is not None and number > spec.maximum:
            return None, FieldViolation(name, f"{number} is above the maximum {spec.maximum:g}", "out_of_range")
        return number, None
    if not isinstance(value, str):
        return None, FieldViolation(name, f"must be text, not {_describe(value)}", "wrong_type")
    if spec.type is InputType.ENUM:
        found = spec.enum_id(value)
        if found is None:
            allowed = ", ".join(f"{v.id} ({v.label})" for v in spec.values)
            hint = closest(value, [v.id for v in spec.values] + [v.label for v in spec.values])
            extra = f"; did you mean '{hint}'?" if hint else ""
            return None, FieldViolation(name, f"'{value}' is not one of {allowed}{extra}", "unknown_value")
        return found, None
    if len(value) > spec.max_length:
        return None, FieldViolation(name, f"is {len(value)} characters; the limit is {spec.max_length}", "too_long")
    return value, None


class InputTable:
    """A document's inputs arranged once for checking facts: most facts are valid, and for those
    the checks below are a set test and a type test per input instead of scans of the inputs.
    Built with each compiled rule set (CompiledRuleSet.inputs); callers without one get one built."""

    __slots__ = ("names", "name_list", "checks", "presence")

    def __init__(self, doc: RuleSetDocument) -> None:
        self.name_list = [spec.name for spec in doc.inputs]
        self.names = frozenset(self.name_list)
        self.checks = tuple(
            (spec, spec.name, spec.type, spec.minimum, spec.maximum, _enum_ids(spec)) for spec in doc.inputs
        )
        self.presence = tuple((PRESENT_PREFIX + spec.name, spec.name) for spec in doc.inputs if spec.optional)


def _enum_ids(spec: InputSpec) -> dict[str, str]:
    """What `spec.enum_id` answers for each id and label: the first value that has it wins."""
    ids: dict[str, str] = {}
    for v in reversed(spec.values):  # earlier values overwrite later ones
        ids[v.label] = v.id
        ids[v.id] = v.id
    return ids


def normalize(doc: RuleSetDocument, facts: Mapping[str, object], table: InputTable | None = None) -> dict[str, object]:
    """Facts with defaults filled and values canonical; InvalidIncident lists every violation.
    `table` is the document's InputTable (built here when not given)."""
    violations: list[FieldViolation] = []
    if len(facts) > MAX_FACTS:
        raise InvalidIncident(
            doc.ruleset, [FieldViolation("facts", f"{len(facts)} facts; the limit is {MAX_FACTS}", "too_many")]
        )
    inputs = table if table is not None else InputTable(doc)
    names = inputs.names
    if not names.issuperset(facts):
        for key in facts:
            if key not in names:
                hint = closest(str(key), inputs.name_list)
                extra = f"; did you mean '{hint}'?" if hint else ""
                violations.append(
                    FieldViolation(str(key), f"is not an input of rule set '{doc.ruleset}'{extra}", "unknown_field")
                )
    out: dict[str, object] = {}
    for spec, name, kind, low, high, enum_ids in inputs.checks:
        value = facts.get(name)
        if value is None:
            if spec.required:
                violations.append(FieldViolation(name, f"is required ({spec.meaning})", "missing"))
            elif spec.default is not None:
                out[name] = spec.default
            continue
        # Values that plainly fit are taken here, with what coerce() would make of them; anything
        # else goes through coerce(), which finds the same value or says why it does not fit.
        if kind is InputType.BOOLEAN:
            if type(value) is bool:
                out[name] = value
                continue
        elif kind is InputType.INTEGER or kind is InputType.NUMBER:
            number: int | float | None = None
            if type(value) is int:
                number = value
            elif type(value) is float:
                if kind is InputType.NUMBER:
                    if math.isfinite(value):
                        number = value
                elif value.is_integer():  # False for NaN and infinity
                    number = int(value)
            if (
                number is not None
                and not (low is not None and number < low)
                and not (high is not None and number > high)
            ):
                out[name] = number
                continue
        elif kind is InputType.ENUM:
            if type(value) is str:
                found = enum_ids.get(value)
                if found is not None:
                    out[name] = found
                    continue
        elif type(value) is str and len(value) <= spec.max_length:
            out[name] = value
            continue
        canonical, violation = coerce(spec, value)
        if violation is not None:
            violations.append(violation)
            continue
        out[name] = canonical
    if violations:
        raise InvalidIncident(doc.ruleset, violations)
    return out


def refuse_empty(doc: RuleSetDocument, facts: Mapping[str, object]) -> None:
    """InvalidIncident for an incident with no facts at all (none, or only nulls), unless the rule
    set declares `empty_report: meaningful`. Such an incident is most often a sender whose facts
    were lost on the way (e.g. a plain object where a Struct was due), and an answer computed on
    nothing but defaults would look like a real one."""
    if doc.empty_report_meaningful or any(v is not None for v in facts.values()):
        return
    raise InvalidIncident(
        doc.ruleset,
        [
            FieldViolation(
                "",
                f"no facts were sent; rule set '{doc.ruleset}' does not answer an empty report (send the facts as a google.protobuf.Struct: see clients/README.md)",
                "empty_report",
            )
        ],
    )


def cross_check(doc: RuleSetDocument, facts: Mapping[str, object]) -> None:
    """InvalidIncident naming each input of every check (`checks:`) the normalized facts break. A
    check whose inputs are not all given (sent or by default) is not applied: a missing detail is
    never a reason to refuse."""
    violations: list[FieldViolation] = []
    for check in doc.checks:
        if all(name in facts for name in check.inputs) and not trace.holds(check.require, facts):
            seen = ", ".join(f"{name} = {trace.show(facts[name])}" for name in check.inputs)
            cited = f"; {'; '.join(str(c) for c in check.citations)}" if check.citations else ""
            for name in check.inputs:
                violations.append(
                    FieldViolation(name, f"breaks check '{check.id}': {check.message} ({seen}{cited})", "check_failed")
                )
    if violations:
        raise InvalidIncident(doc.ruleset, violations)


def presence_flags(
    doc: RuleSetDocument, facts: Mapping[str, object], table: InputTable | None = None
) -> dict[str, bool]:
    """For each optional input, whether the incident gave it (rules test these, see compile)."""
    return {flag: name in facts for flag, name in (table if table is not None else InputTable(doc)).presence}
