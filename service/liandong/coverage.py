"""What the fixtures exercise: rule coverage and boundary coverage (`liandong rules test --coverage`).

Rule coverage: every rule fired by some case, every comparison true in some case, every level,
unit, group and obligation in some case's answer. Boundary coverage: for every threshold of every
comparison on a numeric input, a case with the input at the threshold and one at the nearest value
on its other side (9 and 10 for `以上: 10`; 250 and 250.1 for `超过: 250` on a real-valued input).

The step to "the nearest value" is 1 for integers. For a `number` input it is the input's `step`
when declared (a water level in 0.01 m), else one unit of the digit after the threshold's last
written digit (250 -> 0.1, 452.5 -> 0.01): the resolution at which the plan writes the number,
one digit finer. A comparison with another input (`{input: OTHER}`) is a boundary on the
difference of the two: equal, and one step apart on the other side (step: the input's, else 0.01).
A side outside the input's min/max cannot occur and is not required. A case tests the other side
when it sends a value beyond the threshold by no more than the step (9999999.99 tests `以上:
10000000` on a real-valued input at its 0.1 step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from liandong.document.model import Comparison, InputRef, InputSpec, InputType, Pos, RuleSetDocument
from liandong.document.regions import comparisons, holds
from liandong.engine.result import Determination
from liandong.engine.trace import describe
from liandong.errors import EvaluationError
from liandong.fixtures import FixtureFile, fixture_path, load_fixtures
from liandong.rulebook import RuleBook

RELATIVE_STEP = 0.01


@dataclass(frozen=True)
class Item:
    """One thing a fixture should exercise, and whether one does."""

    kind: str  # rule | condition | level | unit | group | obligation
    id: str
    pos: Pos
    covered: bool


@dataclass(frozen=True)
class BoundaryItem:
    """One threshold of one comparison: the values that test it, and which of them a case sends."""

    rule: str
    input: str
    comparison: str  # as written, e.g. "deaths 以上 10 (≥ 10)"
    pos: Pos
    values: tuple[float, ...]  # the threshold, then the nearest value on its other side
    tested: tuple[bool, ...]
    relative: bool = False  # values are differences input - other input

    @property
    def covered(self) -> bool:
        return all(self.tested)

    def describe(self) -> str:
        shown = ", ".join(
            f"{_show(v)}{'' if t else ' (untested)'}" for v, t in zip(self.values, self.tested, strict=True)
        )
        what = f"{self.input} - other" if self.relative else self.input
        return f"{self.comparison}: {what} = {shown}"


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass(frozen=True)
class Coverage:
    ruleset: str
    version: str
    path: str
    items: tuple[Item, ...]
    boundaries: tuple[BoundaryItem, ...]
    cases: int = 0

    @property
    def rule_percent(self) -> float:
        return _percent(sum(i.covered for i in self.items), len(self.items))

    @property
    def boundary_percent(self) -> float:
        total = sum(len(b.tested) for b in self.boundaries)
        return _percent(sum(sum(b.tested) for b in self.boundaries), total)

    def to_json(self) -> dict[str, object]:
        return {
            "ruleset": self.ruleset,
            "version": self.version,
            "path": self.path,
            "cases": self.cases,
            "rule_coverage": round(self.rule_percent, 2),
            "boundary_coverage": round(self.boundary_percent, 2),
            "uncovered": [
                {"kind": i.kind, "id": i.id, "line": i.pos.line, "column": i.pos.column}
                for i in self.items
                if not i.covered
            ],
            "boundaries_untested": [
                {
                    "rule": b.rule,
                    "input": b.input,
                    "comparison": b.comparison,
                    "line": b.pos.line,
                    "column": b.pos.column,
                    "values": list(b.values),
                    "tested": list(b.tested),
                    "relative": b.relative,
                }
                for b in self.boundaries
                if not b.covered
            ],
        }

    def text(self) -> str:
        lines = [
            f"{self.path}: {self.ruleset} {self.version}: {self.cases} cases, rule coverage "
            f"{self.rule_percent:.1f}%, boundary coverage {self.boundary_percent:.1f}%"
        ]
        for i in self.items:
            if not i.covered:
                lines.append(f"  {self.path}:{i.pos.line}:{i.pos.column}: {i.kind} '{i.id}' is exercised by no case")
        for b in self.boundaries:
            if not b.covered:
                lines.append(f"  {self.path}:{b.pos.line}:{b.pos.column}: rule '{b.rule}': {b.describe()}")
        return "\n".join(lines)


def _percent(part: int, whole: int) -> float:
    return 100.0 if whole == 0 else 100.0 * part / whole


def step(spec: InputSpec, threshold: float) -> float:
    """The nearest value on the other side of a threshold is this far (see the module's doc)."""
    if spec.type is InputType.INTEGER:
        return 1
    if spec.step is not None:
        return spec.step
    exponent = Decimal(repr(float(threshold))).normalize().as_tuple().exponent
    digits = max(0, -exponent) if isinstance(exponent, int) else 0
    return float(Decimal(1).scaleb(-(digits + 1)))


def _sides(op: str, t: float, s: float, integer: bool) -> list[tuple[float, ...]]:
    """(threshold, nearest other side) for each boundary of one comparison."""
    if integer and not float(t).is_integer():
        return [(math.floor(t), math.ceil(t))]  # 999.5 on a count: 999 and 1000
    if op in ("gte", "lt"):
        return [(t, t - s)]
    if op in ("gt", "lte", "eq", "ne"):
        return [(t, t + s)]
    return []


def _round(value: float, s: float) -> float:
    places = max(0, -Decimal(repr(float(s))).normalize().as_tuple().exponent)  # type: ignore[operator]
    return round(value, int(places) + 2)


def boundaries(doc: RuleSetDocument) -> list[tuple[str, Comparison, InputSpec, tuple[float, ...], bool]]:
    """Every boundary of every rule: (rule id, comparison, input, values, relative)."""
    out: list[tuple[str, Comparison, InputSpec, tuple[float, ...], bool]] = []
    for rule in doc.rules:
        for cmp in comparisons(rule.when):
            spec = doc.input(cmp.input)
            if spec is None or not spec.numeric:
                continue
            integer = spec.type is InputType.INTEGER
            if isinstance(cmp.operand, InputRef):
                s = spec.step or (1 if integer else RELATIVE_STEP)
                for values in _sides(cmp.op, 0, s, False):
                    out.append((rule.id, cmp, spec, tuple(_round(v, s) for v in values), True))
                continue
            ops: list[tuple[str, float]]
            if isinstance(cmp.operand, tuple):
                numbers = [float(v) for v in cmp.operand if isinstance(v, (int, float)) and not isinstance(v, bool)]
                ops = (
                    [("gte", numbers[0]), ("lte", numbers[1])] if cmp.op == "between" else [("eq", v) for v in numbers]
                )
            elif isinstance(cmp.operand, (int, float)) and not isinstance(cmp.operand, bool):
                ops = [(cmp.op, float(cmp.operand))]
            else:
                continue
            for op, t in ops:
                s = step(spec, t)
                for values in _sides(op, t, s, integer):
                    inside = tuple(
                        v
                        for v in (_round(x, s) for x in values)
                        if (spec.minimum is None or v >= spec.minimum) and (spec.maximum is None or v <= spec.maximum)
                    )
                    if inside:
                        out.append((rule.id, cmp, spec, inside, False))
    return out


@dataclass
class _Seen:
    facts: list[dict[str, object]] = field(default_factory=list)
    answers: list[Determination] = field(default_factory=list)


def _sent(value: object, target: float, relative_step: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    tolerance = (relative_step or 1e-9) / 1000
    return abs(float(value) - target) <= tolerance


def _beyond(value: object, threshold: float, nearest: float) -> bool:
    """Whether a value lies on the nearest value's side of the threshold, no further than it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    lo, hi = sorted((threshold, nearest))
    tolerance = abs(nearest - threshold) / 1000
    if nearest > threshold:
        return lo < value <= hi + tolerance
    return lo - tolerance <= value < hi


def measure(doc: RuleSetDocument, answers: Iterable[Determination], cases: int) -> Coverage:
    """Coverage of one document by the answers its fixtures got (refused cases exercise nothing)."""
    seen = _Seen()
    for det in answers:
        seen.answers.append(det)
        seen.facts.append(det.facts)
    fired = {r.id for det in seen.answers for r in det.matched_rules}
    items: list[Item] = []
    for rule in doc.rules:
        items.append(Item("rule", rule.id, rule.pos, rule.id in fired))
        for cmp in comparisons(rule.when):
            hit = any(holds(cmp, f) for f in seen.facts)
            items.append(Item("condition", f"{rule.id}: {describe(cmp)}", cmp.pos, hit))
    for kind, entries, got in (
        ("level", [(lv.code, lv.pos) for lv in doc.levels], {d.level.code for d in seen.answers if d.level}),
        ("unit", [(u.id, u.pos) for u in doc.units], {u.id for d in seen.answers for u in d.units}),
        ("group", [(g.id, g.pos) for g in doc.groups], {g.id for d in seen.answers for g in d.groups}),
        ("obligation", [(o.id, o.pos) for o in doc.obligations], {o.id for d in seen.answers for o in d.obligations}),
    ):
        items.extend(Item(kind, ident, pos, ident in got) for ident, pos in entries)
    found: list[BoundaryItem] = []
    for rule_id, cmp, spec, values, relative in boundaries(doc):
        tested = []
        for v in values:
            if relative:
                assert isinstance(cmp.operand, InputRef)
                other = cmp.operand.input
                s = spec.step or RELATIVE_STEP
                hit = any(
                    cmp.input in f and other in f and _sent(float(f[cmp.input]) - float(f[other]), v, s)  # type: ignore[arg-type]
                    for f in seen.facts
                )
            elif v == values[0]:
                hit = any(_sent(f.get(cmp.input), v, step(spec, v)) for f in seen.facts)
            else:  # the other side: any value beyond the threshold by at most one step
                t = values[0]
                hit = any(_beyond(f.get(cmp.input), t, v) for f in seen.facts)
            tested.append(hit)
        found.append(BoundaryItem(rule_id, cmp.input, describe(cmp), cmp.pos, values, tuple(tested), relative))
    return Coverage(doc.ruleset, doc.version, doc.path, tuple(items), tuple(found), cases)


def run(book: RuleBook, fixture_file: FixtureFile) -> Coverage:
    """Answer every case of one fixtures file with its version, and measure what they exercise."""
    compiled = next(c for c in book.versions(fixture_file.ruleset) if c.document.version == fixture_file.version)
    answers = []
    for case in fixture_file.cases:
        try:
            answers.append(book.determine(case.incident, fixture_file.ruleset, fixture_file.version))
        except EvaluationError:
            continue
    return measure(compiled.document, answers, len(fixture_file.cases))


def for_documents(book: RuleBook, paths: Iterable[Path]) -> list[Coverage]:
    """Coverage of each document that has fixtures (the fixture run reports those that have none)."""
    out = []
    for path in paths:
        fixtures = fixture_path(path)
        if fixtures.exists():
            out.append(run(book, load_fixtures(fixtures)))
    return out
