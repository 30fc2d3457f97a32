"""Checks that need the whole document: ids, references, and operands against input types.

`check` also normalizes what it verifies (enum labels to ids, integral floats to ints), so the
compiler and evaluator see one spelling of every value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from liandong.document.model import (
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    InputRef,
    InputSpec,
    InputType,
    Not,
    Pos,
    RuleSetDocument,
    Scalar,
    Then,
)
from liandong.document.words import ORDERING
from liandong.errors import Problem
from liandong.suggest import closest


class _Checker:
    def __init__(self, doc: RuleSetDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def problem(self, pos: Pos, message: str, rule_id: str = "", suggestion: str = "") -> None:
        self.problems.append(
            Problem(
                pos.path,
                pos.line,
                pos.column,
                message,
                key=pos.key,
                ruleset=self.doc.ruleset,
                rule_id=rule_id,
                suggestion=suggestion,
            )
        )

    def unique(self, kind: str, items: Iterable[tuple[str, Pos]]) -> None:
        seen: dict[str, Pos] = {}
        for ident, pos in items:
            if ident in seen:
                self.problem(pos, f"duplicate {kind} '{ident}' (first at line {seen[ident].line})")
            else:
                seen[ident] = pos

    def ref(self, kind: str, ident: str, known: Iterable[str], pos: Pos, owner: str, rule_id: str = "") -> None:
        known = list(known)
        if ident not in known:
            self.problem(
                pos, f"{owner} names unknown {kind} '{ident}'", rule_id=rule_id, suggestion=closest(ident, known)
            )

    def run(self) -> RuleSetDocument:
        d = self.doc
        self.unique("input", ((i.name, i.pos) for i in d.inputs))
        self.unique("level code", ((lv.code, lv.pos) for lv in d.levels))
        self.unique("level rank", ((str(lv.rank), lv.pos) for lv in d.levels))
        self.unique("unit id", ((u.id, u.pos) for u in d.units))
        self.unique("group id", ((g.id, g.pos) for g in d.groups))
        self.unique("obligation id", ((o.id, o.pos) for o in d.obligations))
        self.unique("rule id", ((r.id, r.pos) for r in d.rules))
        self.unique("incident type", ((t, Pos(d.path, 1, 1, "incident_types")) for t in d.incident_types))
        unit_ids = [u.id for u in d.units]
        for grp in d.groups:
            if grp.lead is not None:
                self.ref(
                    "unit", grp.lead, unit_ids, grp.where.get(f"lead:{grp.lead}", grp.pos), f"group '{grp.id}' lead"
                )
            for member in grp.members:
                self.ref("unit", member, unit_ids, grp.where.get(f"members:{member}", grp.pos), f"group '{grp.id}'")
            self.unique(f"member of group '{grp.id}'", ((m, grp.pos) for m in grp.members))
        for obl in d.obligations:
            for who in obl.who:
                self.ref("unit", who, unit_ids, obl.where.get(f"who:{who}", obl.pos), f"obligation '{obl.id}'")
        inputs = tuple(self.input(spec) for spec in d.inputs)
        self.doc = d = dataclasses.replace(d, inputs=inputs)
        for level in d.levels:
            if level.then is not None:
                self.then_refs(level.then, level.pos, f"level '{level.code}'", "")
        rules = []
        for rule in d.rules:
            self.then_refs(rule.then, rule.pos, f"rule '{rule.id}'", rule.id)
            rules.append(dataclasses.replace(rule, when=self.condition(rule.when, rule.id)))
        self.unique("check id", ((c.id, c.pos) for c in d.checks))
        checks = tuple(
            dataclasses.replace(c, require=self.condition(c.require, "", f"check '{c.id}'")) for c in d.checks
        )
        return dataclasses.replace(d, rules=tuple(rules), checks=checks)

    def then_refs(self, t: Then, pos: Pos, owner: str, rule_id: str) -> None:
        d = self.doc
        unit_ids = [u.id for u in d.units]

        def at(field: str, ident: str) -> Pos:
            return t.where.get(f"{field}:{ident}", pos)

        if t.level is not None:
            self.ref("level", t.level, (lv.code for lv in d.levels), at("level", t.level), owner, rule_id)
        if t.lead is not None:
            self.ref("unit", t.lead, unit_ids, at("lead", t.lead), owner, rule_id)
        for u in t.units:
            self.ref("unit", u, unit_ids, at("units", u), owner, rule_id)
        for g in t.groups:
            self.ref("group", g, (x.id for x in d.groups), at("groups", g), owner, rule_id)
        for o in t.obligations:
            self.ref("obligation", o, (x.id for x in d.obligations), at("obligations", o), owner, rule_id)

    def input(self, spec: InputSpec) -> InputSpec:
        if spec.type is InputType.ENUM:
            self.unique(f"value id of input '{spec.name}'", ((v.id, spec.pos) for v in spec.values))
            self.unique(f"value label of input '{spec.name}'", ((v.label, spec.pos) for v in spec.values))
        if spec.default is None:
            return spec
        value = self.value(spec, spec.default, spec.pos, f"input '{spec.name}' default")
        if value is None:
            return spec
        if (
            spec.numeric
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (
                (spec.minimum is not None and value < spec.minimum)
                or (spec.maximum is not None and value > spec.maximum)
            )
        ):
            self.problem(spec.pos, f"input '{spec.name}' default {value} is outside its bounds")
        return dataclasses.replace(spec, default=value)

    def value(self, spec: InputSpec, value: Scalar, pos: Pos, owner: str, rule_id: str = "") -> Scalar | None:
        """The value normalized to the input's type, or None (and a problem) if it does not fit."""
        kind = spec.type
        if kind is InputType.BOOLEAN:
            if isinstance(value, bool):
                return value
        elif kind is InputType.INTEGER:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return int(value)
        elif kind is InputType.NUMBER:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return value
        elif kind is InputType.STRING:
            if isinstance(value, str):
                return value
        elif kind is InputType.ENUM and isinstance(value, str):
            found = spec.enum_id(value)
            if found is not None:
                return found
            choices = [v.id for v in spec.values] + [v.label for v in spec.values]
            self.problem(
                pos,
                f"{owner}: '{value}' is not a value of input '{spec.name}' ({', '.join(v.id for v in spec.values)})",
                rule_id=rule_id,
                suggestion=closest(value, choices),
            )
            return None
        self.problem(pos, f"{owner}: {value!r} does not fit input '{spec.name}' of type {kind.value}", rule_id=rule_id)
        return None

    def condition(self, cond: Condition, rule_id: str, owner: str = "") -> Condition:
        """The condition normalized; `owner` names what holds it (default: the rule)."""
        owner = owner or f"rule '{rule_id}'"
        if isinstance(cond, AllOf):
            return dataclasses.replace(cond, items=tuple(self.condition(c, rule_id, owner) for c in cond.items))
        if isinstance(cond, AnyOf):
            return dataclasses.replace(cond, items=tuple(self.condition(c, rule_id, owner) for c in cond.items))
        if isinstance(cond, Not):
            return dataclasses.replace(cond, item=self.condition(cond.item, rule_id, owner))
        return self.comparison(cond, rule_id, owner)

    def comparison(self, cmp: Comparison, rule_id: str, owner: str) -> Comparison:
        spec = self.doc.input(cmp.input)
        if spec is None:
            self.problem(
                cmp.pos,
                f"{owner} compares unknown input '{cmp.input}'",
                rule_id,
                closest(cmp.input, (i.name for i in self.doc.inputs)),
            )
            return cmp
        if cmp.op in ORDERING and not spec.numeric:
            self.problem(
                cmp.pos, f"{owner}: '{cmp.word}' needs a numeric input, but '{spec.name}' is {spec.type.value}", rule_id
            )
            return cmp
        operand = cmp.operand
        if isinstance(operand, InputRef):
            other = self.doc.input(operand.input)
            if other is None:
                self.problem(
                    cmp.pos,
                    f"{owner} compares '{cmp.input}' with unknown input '{operand.input}'",
                    rule_id,
                    closest(operand.input, (i.name for i in self.doc.inputs)),
                )
            elif other.numeric != spec.numeric or (not spec.numeric and other.type is not spec.type):
                self.problem(
                    cmp.pos,
                    f"{owner} compares '{cmp.input}' ({spec.type.value}) with '{other.name}' ({other.type.value})",
                    rule_id,
                )
            elif spec.type is InputType.ENUM and other.values != spec.values:
                self.problem(
                    cmp.pos,
                    f"{owner} compares enums '{cmp.input}' and '{other.name}' that have different values",
                    rule_id,
                )
            return cmp
        if isinstance(operand, tuple):
            values = tuple(self.value(spec, v, cmp.pos, owner, rule_id) for v in operand)
            if any(v is None for v in values):
                return cmp
            if cmp.op == "between" and values[0] > values[1]:  # type: ignore[operator]
                self.problem(
                    cmp.pos, f"{owner}: 'between' on '{cmp.input}' has low {values[0]} above high {values[1]}", rule_id
                )
            return dataclasses.replace(cmp, operand=tuple(v for v in values if v is not None))
        if (
            cmp.op in ORDERING
            and spec.type is InputType.INTEGER
            and isinstance(operand, float)
            and not isinstance(operand, bool)
        ):
            if not math.isfinite(operand):
                self.problem(
                    cmp.pos, f"{owner}: '{cmp.word}' on '{cmp.input}' needs a finite number, not {operand}", rule_id
                )
            return cmp  # 999.5 against an integer input is meaningful: keep the fraction
        value = self.value(spec, operand, cmp.pos, owner, rule_id)
        return cmp if value is None else dataclasses.replace(cmp, operand=value)


def check(doc: RuleSetDocument) -> tuple[RuleSetDocument, list[Problem]]:
    """The document normalized, and every reference or type problem found in it."""
    checker = _Checker(doc)
    normalized = checker.run()
    return normalized, checker.problems
