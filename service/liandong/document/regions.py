"""The input space of a rule document cut into regions at its thresholds, for the rule-author tools.

Every comparison against a constant is constant between two consecutive thresholds of its input, so
one value per threshold and one per open interval between thresholds stand for every value there:
the analysis (gaps, overlaps, masked rules), the semantic diff and coverage reason over these values
exactly, never by sampling. Inputs are split into components (inputs that some rule or check names
together); a rule is evaluated over the product of its component's regions only.

A comparison with another input (`{input: OTHER}`) is cut at the other input's default: the regions
of `water_level_m >= guaranteed_level_m` are those for the default guaranteed level.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from liandong.document.model import (
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    InputRef,
    InputSpec,
    InputType,
    Not,
    Rule,
    RuleSetDocument,
    Then,
)

MAX_POINTS = 200_000  # per component; beyond it the component is reported as too large to analyse
OTHER_TEXT = "\u0000other"  # a string input's value that no comparison names


@dataclass(frozen=True)
class Region:
    """One value standing for a region of one input, and how to show that region."""

    value: object  # ABSENT for an optional input left out
    text: str
    order: float  # position along the input (absent first)


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


def comparisons(cond: Condition) -> Iterator[Comparison]:
    if isinstance(cond, (AllOf, AnyOf)):
        for c in cond.items:
            yield from comparisons(c)
    elif isinstance(cond, Not):
        yield from comparisons(cond.item)
    else:
        yield cond


def names(cond: Condition) -> tuple[str, ...]:
    found: list[str] = []
    for cmp in comparisons(cond):
        found.append(cmp.input)
        if isinstance(cmp.operand, InputRef):
            found.append(cmp.operand.input)
    return tuple(dict.fromkeys(found))


def _ordered(op: str, left: object, right: object) -> bool:
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if op == "in":
        return left in right  # type: ignore[operator]
    if isinstance(left, str) or isinstance(right, str):
        return False
    if op == "between":
        assert isinstance(right, tuple)
        return float(right[0]) <= float(left) <= float(right[1])  # type: ignore[arg-type]
    a, b = float(left), float(right)  # type: ignore[arg-type]
    return {"gte": a >= b, "gt": a > b, "lte": a <= b, "lt": a < b}[op]


def holds(cond: Condition, point: Mapping[str, object]) -> bool:
    """The condition at a point (as the engine: a comparison on an absent input is false)."""
    if isinstance(cond, Not):
        return not holds(cond.item, point)
    if isinstance(cond, AllOf):
        return all(holds(c, point) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(holds(c, point) for c in cond.items)
    left = point.get(cond.input, ABSENT)
    right = point.get(cond.operand.input, ABSENT) if isinstance(cond.operand, InputRef) else cond.operand
    if left is ABSENT or right is ABSENT:
        return False
    return _ordered(cond.op, left, right)


def show(value: object) -> str:
    if value is ABSENT:
        return "absent"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    if value == OTHER_TEXT:
        return "(any other text)"
    return str(value)


def thresholds(doc: RuleSetDocument, spec: InputSpec) -> list[float]:
    """Every number the conditions and checks compare the input with (other inputs at their defaults)."""
    found: set[float] = set()
    conds = [r.when for r in doc.rules] + [c.require for c in doc.checks]
    for cond in conds:
        for cmp in comparisons(cond):
            if cmp.input == spec.name:
                if isinstance(cmp.operand, InputRef):
                    other = doc.input(cmp.operand.input)
                    if other is not None and isinstance(other.default, (int, float)):
                        found.add(float(other.default))
                elif isinstance(cmp.operand, tuple):
                    found.update(float(v) for v in cmp.operand if _is_number(v))
                elif _is_number(cmp.operand):
                    found.add(float(cmp.operand))
            elif isinstance(cmp.operand, InputRef) and cmp.operand.input == spec.name:
                if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
                    found.add(float(spec.default))
                mine = doc.input(cmp.input)
                if mine is not None and isinstance(mine.default, (int, float)) and not isinstance(mine.default, bool):
                    found.add(float(mine.default))
    return sorted(t for t in found if _inside(spec, t))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inside(spec: InputSpec, value: float) -> bool:
    return (spec.minimum is None or value >= spec.minimum) and (spec.maximum is None or value <= spec.maximum)


def _num(value: float, spec: InputSpec) -> int | float:
    return int(value) if spec.type is InputType.INTEGER or float(value).is_integer() else value


def regions(doc: RuleSetDocument, spec: InputSpec) -> list[Region]:
    """One value per region of the input, in order along it."""
    out: list[Region] = []
    if spec.optional:
        out.append(Region(ABSENT, "absent", -math.inf))
    if spec.type is InputType.BOOLEAN:
        out += [Region(False, "false", 0), Region(True, "true", 1)]
    elif spec.type is InputType.ENUM:
        out += [Region(v.id, v.id, i) for i, v in enumerate(spec.values)]
    elif spec.type is InputType.STRING:
        named: list[str] = []
        for rule in doc.rules:
            for cmp in comparisons(rule.when):
                if cmp.input == spec.name and not isinstance(cmp.operand, InputRef):
                    values = cmp.operand if isinstance(cmp.operand, tuple) else (cmp.operand,)
                    named += [v for v in values if isinstance(v, str)]
        texts = list(dict.fromkeys(named)) + [OTHER_TEXT]
        out += [Region(t, show(t), i) for i, t in enumerate(texts)]
    else:
        out += _numeric(spec, thresholds(doc, spec))
    return out


def _numeric(spec: InputSpec, ts: list[float]) -> list[Region]:
    lo, hi = spec.minimum, spec.maximum
    integer = spec.type is InputType.INTEGER
    if not ts:
        base = spec.default if _is_number(spec.default) else (lo if lo is not None else 0)
        return [Region(_num(float(base), spec), "any", 0)]  # type: ignore[arg-type]
    points: list[tuple[float, str]] = []
    first = ts[0]
    if lo is None:
        below = (math.ceil(first) - 1) if integer else first - 1
        points.append((below, f"< {show(_num(first, spec))}"))
    elif lo < first:
        if integer:
            top = math.ceil(first) - 1
            points.append((lo, f"= {show(_num(lo, spec))}" if top <= lo else f"in {show(_num(lo, spec))}..{top}"))
        else:
            points.append((lo, f"in [{show(_num(lo, spec))}, {show(_num(first, spec))})"))
    for i, t in enumerate(ts):
        if not integer or float(t).is_integer():
            points.append((t, f"= {show(_num(t, spec))}"))
        upper = ts[i + 1] if i + 1 < len(ts) else None
        if upper is not None:
            if integer:
                start, end = math.floor(t) + 1, math.ceil(upper) - 1
                if start <= end:
                    points.append((start, f"= {start}" if start == end else f"in {start}..{end}"))
            else:
                points.append(((t + upper) / 2, f"in ({show(_num(t, spec))}, {show(_num(upper, spec))})"))
        elif hi is None or hi > t:
            nxt = math.floor(t) + 1 if integer else t + 1
            if hi is not None:
                nxt = min(nxt, math.floor(hi) if integer else hi)
            if nxt > t:
                points.append((nxt, f"> {show(_num(t, spec))}"))
    out = []
    seen: set[float] = set()
    for value, text in points:
        if value in seen or not _inside(spec, value):
            continue
        seen.add(value)
        out.append(Region(_num(value, spec), text, value))
    return sorted(out, key=lambda r: r.order)


@dataclass
class Component:
    """Inputs that rules or checks name together, with their regions and the rules on them."""

    inputs: tuple[str, ...]
    rules: tuple[Rule, ...]
    regions: dict[str, list[Region]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return math.prod(len(self.regions[n]) for n in self.inputs)

    def points(self, doc: RuleSetDocument) -> Iterator[dict[str, object]]:
        """Every valid point: each input at one region's value (absent left out); checks respected."""
        lists = [self.regions[n] for n in self.inputs]
        checks = [c for c in doc.checks if set(c.inputs) <= set(self.inputs)]
        defaults = _defaults(doc)
        for combo in itertools.product(*lists):
            point = {n: r.value for n, r in zip(self.inputs, combo, strict=True) if r.value is not ABSENT}
            if any(
                all(n in {**defaults, **point} for n in c.inputs) and not holds(c.require, {**defaults, **point})
                for c in checks
            ):
                continue
            yield point


def _defaults(doc: RuleSetDocument) -> dict[str, object]:
    return {s.name: s.default for s in doc.inputs if s.default is not None}


def components(doc: RuleSetDocument, rules: Iterable[Rule] | None = None) -> list[Component]:
    """The document's inputs grouped by the rules and checks that name them together."""
    rules = tuple(doc.rules if rules is None else rules)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    def join(group: tuple[str, ...]) -> None:
        for n in group:
            find(n)
        for a, b in itertools.pairwise(group):
            parent[find(a)] = find(b)

    known = {s.name for s in doc.inputs}
    for rule in rules:
        join(tuple(n for n in names(rule.when) if n in known))
    for check in doc.checks:
        join(tuple(n for n in check.inputs if n in known))
    groups: dict[str, list[str]] = {}
    for spec in doc.inputs:
        if spec.name in parent:
            groups.setdefault(find(spec.name), []).append(spec.name)
    out = []
    for members in groups.values():
        on = tuple(r for r in rules if set(names(r.when)) & set(members))
        comp = Component(tuple(members), on)
        for n in members:
            found = doc.input(n)
            assert found is not None
            comp.regions[n] = regions(doc, found)
        out.append(comp)
    return out


def unconditional(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """Rules that name no input: they hold for every incident."""
    return tuple(r for r in rules if not names(r.when))


@dataclass(frozen=True)
class Answer:
    """What the rules of one component decide at one point (the engine's combination, in Python)."""

    level: str | None
    lead: str | None
    command_tier: str | None
    units: frozenset[str]
    groups: frozenset[str]
    obligations: frozenset[str]
    fired: tuple[str, ...]

    def describe(self) -> str:
        parts = [f"level {self.level or '-'}", f"lead {self.lead or '-'}"]
        if self.command_tier:
            parts.append(f"command tier {self.command_tier}")
        for name in ("units", "groups", "obligations"):
            items = sorted(getattr(self, name))
            parts.append(f"{name} [{', '.join(items)}]")
        return "; ".join(parts)


def answer(doc: RuleSetDocument, fired: Iterable[Rule]) -> Answer:
    """Combine fired rules as the engine does (rules/README.md, "How fired rules combine")."""
    fired = tuple(fired)
    ranks = {lv.code: lv.rank for lv in doc.levels}
    levels = [r.then.level for r in fired if r.then.level in ranks]
    level = max(levels, key=lambda c: ranks[c]) if levels else None
    sources: list[tuple[int, int, Then]] = [
        (ranks.get(r.then.level or "", -(10**9)), -i, r.then) for i, r in enumerate(fired)
    ]
    decided = next((lv for lv in doc.levels if lv.code == level), None)
    if decided is not None and decided.then is not None:
        sources.append((decided.rank, -len(fired), decided.then))

    def best(attr: str) -> str | None:
        having = [s for s in sources if getattr(s[2], attr) is not None]
        return getattr(max(having, key=lambda s: (s[0], s[1]))[2], attr) if having else None

    lead = best("lead")
    groups = frozenset(g for s in sources for g in s[2].groups)
    obligations = frozenset(o for s in sources for o in s[2].obligations)
    units = {u for s in sources for u in s[2].units} | ({lead} if lead else set())
    for g in doc.groups:
        if g.id in groups:
            units |= set(g.members) | ({g.lead} if g.lead else set())
    for o in doc.obligations:
        if o.id in obligations:
            units |= set(o.who)
    return Answer(level, lead, best("command_tier"), frozenset(units), groups, obligations, tuple(r.id for r in fired))
