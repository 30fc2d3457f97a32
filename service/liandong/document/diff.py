"""Semantic diff of two rule documents with the same inputs (`liandong rules diff OLD NEW`).

The input space is cut at the thresholds of both documents (document/regions.py, the mechanism of
the analysis), and each region of each component is answered under both, as a whole incident with
every other input at its default; the regions whose level, lead, command tier,
units, groups or obligations differ are named, each with one example incident.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from liandong.document.model import RuleSetDocument
from liandong.document.regions import (
    MAX_POINTS,
    Answer,
    answer,
    components,
    holds,
    show,
)

FIELDS = ("level", "lead", "command_tier", "units", "groups", "obligations")


class NotComparable(ValueError):
    """The two documents do not declare the same inputs."""


@dataclass(frozen=True)
class Change:
    """One kind of change, the regions where it happens, and an incident that shows it."""

    fields: tuple[tuple[str, str, str], ...]  # (field, old, new)
    regions: tuple[str, ...]
    example: dict[str, object]

    def describe(self) -> str:
        what = "; ".join(f"{f}: {o} {n}" if o.startswith("-[") else f"{f}: {o} -> {n}" for f, o, n in self.fields)
        more = f" (and {len(self.regions) - 3} more regions)" if len(self.regions) > 3 else ""
        return f"{what}\n    at {' | '.join(self.regions[:3])}{more}\n    e.g. {self.example}"

    def to_json(self) -> dict[str, object]:
        return {
            "changes": [{"field": f, "old": o, "new": n} for f, o, n in self.fields],
            "regions": list(self.regions),
            "example": self.example,
        }


def _value(a: Answer, name: str) -> str:
    v = getattr(a, name)
    return "-" if v is None else str(v)


def _changed(a: Answer, b: Answer) -> tuple[tuple[str, str, str], ...]:
    """(field, old, new) for each field that differs; for a list, what it loses and what it gains."""
    out = []
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if x == y:
            continue
        if isinstance(x, frozenset) and isinstance(y, frozenset):
            out.append((f, "-[" + ", ".join(sorted(x - y)) + "]", "+[" + ", ".join(sorted(y - x)) + "]"))
        else:
            out.append((f, _value(a, f), _value(b, f)))
    return tuple(out)


def _comparable(old: RuleSetDocument, new: RuleSetDocument) -> None:
    a = {i.name: i.type for i in old.inputs}
    b = {i.name: i.type for i in new.inputs}
    if a != b:
        only_old = sorted(set(a) - set(b))
        only_new = sorted(set(b) - set(a))
        retyped = sorted(n for n in set(a) & set(b) if a[n] != b[n])
        raise NotComparable(
            "the documents do not have the same inputs"
            + (f"; only in {old.path}: {', '.join(only_old)}" if only_old else "")
            + (f"; only in {new.path}: {', '.join(only_new)}" if only_new else "")
            + (f"; of another type: {', '.join(retyped)}" if retyped else "")
        )


def diff(old: RuleSetDocument, new: RuleSetDocument) -> list[Change]:
    """Every change of answer between the two documents, grouped by what changes."""
    _comparable(old, new)
    merged = dataclasses.replace(new, rules=old.rules + new.rules, checks=old.checks + new.checks)
    defaults = {s.name: s.default for s in new.inputs if s.default is not None}
    grouped: dict[tuple[tuple[str, str, str], ...], tuple[list[str], dict[str, object]]] = {}
    comps = components(merged)
    for comp in comps:
        if comp.size > MAX_POINTS:
            raise NotComparable(f"{comp.size} regions over {', '.join(comp.inputs)}: too many to compare")
        for point in comp.points(merged):
            # The whole incident: this region's values, every other input at its default.
            incident = {**defaults, **point}
            for name in comp.inputs:
                if name not in point:
                    incident.pop(name, None)
            a = answer(old, [r for r in old.rules if holds(r.when, incident)])
            b = answer(new, [r for r in new.rules if holds(r.when, incident)])
            changed = _changed(a, b)
            if not changed:
                continue
            region = ", ".join(
                f"{n} {next(r.text for r in comp.regions[n] if r.value == point[n])}" if n in point else f"{n} absent"
                for n in comp.inputs
            )
            regions, _ = grouped.setdefault(changed, ([], incident))
            regions.append(region)
    if not comps:
        a = answer(old, [r for r in old.rules if holds(r.when, defaults)])
        b = answer(new, [r for r in new.rules if holds(r.when, defaults)])
        changed = _changed(a, b)
        if changed:
            grouped[changed] = (["every incident"], dict(defaults))
    return [
        Change(fields, tuple(regions), {k: _plain(v) for k, v in example.items()})
        for fields, (regions, example) in grouped.items()
    ]


def _plain(value: object) -> object:
    return value if isinstance(value, (bool, int, float)) else show(value)
