"""Static analysis of one rule document: gaps, overlaps, rules that never fire or are masked, and
catalogue entries nothing uses (rules/README.md, "Analysis").

Computed from the conditions over the regions of `regions` (cut at every threshold), not by
sampling. Each finding has a stable id that a document can name under `accept:` with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from liandong.document.model import Pos, Rule, RuleSetDocument
from liandong.document.regions import (
    MAX_POINTS,
    Component,
    Region,
    answer,
    comparisons,
    components,
    holds,
    names,
    show,
    unconditional,
)
from liandong.errors import Problem


@dataclass(frozen=True)
class Finding:
    """One located finding; `accepted` is the document's reason when it accepts it."""

    kind: str  # gap | overlap | never-fires | masked | unused | too-large | stale-accept
    id: str
    message: str
    pos: Pos
    accepted: str = ""

    def problem(self, ruleset: str) -> Problem:
        return Problem(
            self.pos.path,
            self.pos.line,
            self.pos.column,
            f"{self.id}: {self.message}",
            key=self.pos.key,
            ruleset=ruleset,
        )

    def __str__(self) -> str:
        where = f"{self.pos.path}:{self.pos.line}:{self.pos.column}"
        if self.accepted:
            return f"{where}: accepted {self.id}: {self.message} (reason: {self.accepted})"
        return f"{where}: {self.id}: {self.message}"


def _graded(doc: RuleSetDocument) -> list[str]:
    """Numeric inputs that some level-setting rule compares."""
    out: list[str] = []
    for rule in doc.rules:
        if rule.then.level is None:
            continue
        for cmp in comparisons(rule.when):
            spec = doc.input(cmp.input)
            if spec is not None and spec.numeric and cmp.input not in out:
                out.append(cmp.input)
    return out


def _region_of(comp: Component, name: str, value: object) -> Region:
    return next(r for r in comp.regions[name] if r.value == value or (r.value is value))


def _lines(comp: Component, name: str, points: list[dict[str, object]]) -> dict[tuple[object, ...], list[int]]:
    """Point indexes grouped by the values of every input but `name` (a line along `name`)."""
    others = [n for n in comp.inputs if n != name]
    lines: dict[tuple[object, ...], list[int]] = {}
    for i, p in enumerate(points):
        lines.setdefault(tuple(p.get(n, "\u0000absent") for n in others), []).append(i)
    order = {id(r.value): r.order for r in comp.regions[name]}

    def position(i: int) -> float:
        v = points[i].get(name)
        if v is None:
            return float("-inf")
        return next((r.order for r in comp.regions[name] if r.value == v), order.get(id(v), 0.0))

    for key in lines:
        lines[key].sort(key=position)
    return lines


def _context(comp: Component, name: str, point: dict[str, object]) -> str:
    rest = [f"{n} = {show(point[n])}" for n in comp.inputs if n != name and n in point]
    return f" (with {', '.join(rest)})" if rest else ""


def _value_text(comp: Component, name: str, point: dict[str, object]) -> str:
    if name not in point:
        return f"{name} absent"
    region = _region_of(comp, name, point[name])
    text = region.text
    return f"{name} {text}" if not text.startswith("=") else f"{name} {text}"


class _Analysis:
    def __init__(self, doc: RuleSetDocument) -> None:
        self.doc = doc
        self.findings: list[Finding] = []
        self.always = unconditional(doc.rules)
        self.defaults = {i.name: i.default for i in doc.inputs if i.default is not None}

    def typical(self, comp: Component, name: str, point: dict[str, object]) -> bool:
        """Whether every input but `name` is at its default (absent for an optional one)."""
        return all(point.get(n) == self.defaults.get(n) for n in comp.inputs if n != name)

    def shown(
        self, comp: Component, name: str, points: list[dict[str, object]], lines: list[list[int]]
    ) -> tuple[list[str], str]:
        """The values of one line along `name` where the finding holds (the line with every other
        input at its default when it has any, else the first), with the other inputs' values and
        how many other combinations of them have it too."""
        having = [line for line in lines if line]
        if not having:
            return [], ""
        line = next((h for h in having if self.typical(comp, name, points[h[0]])), having[0])
        values = list(dict.fromkeys(_value_text(comp, name, points[i]) for i in line))
        more = f"; also with {len(having) - 1} other combination(s) of them" if len(having) > 1 else ""
        context = _context(comp, name, points[line[0]])
        if more:
            context = context[:-1] + more + ")" if context else f" ({more[2:]})"
        return values, context

    def add(self, kind: str, ident: str, message: str, pos: Pos) -> None:
        if not any(f.id == ident for f in self.findings):
            self.findings.append(Finding(kind, ident, message, pos))

    def run(self) -> list[Finding]:
        doc = self.doc
        comps = components(doc)
        for comp in comps:
            if comp.size > MAX_POINTS:
                self.add(
                    "too-large",
                    f"too-large:{'+'.join(comp.inputs)}",
                    f"{comp.size} regions over {', '.join(comp.inputs)}: above {MAX_POINTS}, not analysed",
                    doc.rules[0].pos,
                )
                continue
            points = list(comp.points(doc))
            fired = [[r for r in comp.rules + self.always if holds(r.when, p)] for p in points]
            self.gaps(comp, points, fired)
            self.overlaps(comp, points, fired)
            self.masked(comp.rules, points, fired)
        if self.always:
            self.masked(self.always, [{}], [list(self.always)])
        self.unused()
        return self.findings

    # -- gaps --------------------------------------------------------------------------------------
    def gaps(self, comp: Component, points: list[dict[str, object]], fired: list[list[Rule]]) -> None:
        levels = {lv.code for lv in self.doc.levels}
        if not levels:
            return
        for name in _graded(self.doc):
            if name not in comp.inputs:
                continue
            lines: list[list[int]] = []
            for line in _lines(comp, name, points).values():
                seen_level = False
                hits = []
                for i in line:
                    if any(r.then.level in levels for r in fired[i]):
                        seen_level = True
                    elif seen_level and name in points[i]:
                        hits.append(i)
                lines.append(hits)
            found, example = self.shown(comp, name, points, lines)
            if found:
                first = next(c for r in self.doc.rules if r.then.level for c in comparisons(r.when) if c.input == name)
                self.add(
                    "gap",
                    f"gap:{name}",
                    f"no rule sets a level at {'; '.join(found)}{example}, though lower values have one",
                    first.pos,
                )

    # -- overlaps ----------------------------------------------------------------------------------
    def overlaps(self, comp: Component, points: list[dict[str, object]], fired: list[list[Rule]]) -> None:
        def conflict(a: Rule, b: Rule) -> str:
            for attr in ("level", "lead", "command_tier"):
                x, y = getattr(a.then, attr), getattr(b.then, attr)
                if x is not None and y is not None and x != y:
                    return attr
            return ""

        pairs = [(a, b) for i, a in enumerate(comp.rules) for b in comp.rules[i + 1 :] if conflict(a, b)]
        if not pairs:
            return
        holding = [{r.id for r in f} for f in fired]
        for a, b in pairs:
            shared = [n for n in names(a.when) if n in names(b.when) and n in comp.inputs]
            # One finding per pair: on a graded (numeric) input first, where the values say most.
            shared.sort(key=lambda n: not (self.doc.input(n) is not None and self.doc.input(n).numeric))  # type: ignore[union-attr]
            for name in shared:
                lines = []
                for line in _lines(comp, name, points).values():
                    a_on = [a.id in holding[i] for i in line]
                    b_on = [b.id in holding[i] for i in line]
                    if len(set(a_on)) < 2 or len(set(b_on)) < 2:
                        continue  # one of them does not depend on this input here
                    lines.append([i for k, i in enumerate(line) if a_on[k] and b_on[k]])
                found, example = self.shown(comp, name, points, lines)
                if found:
                    attr = conflict(a, b)
                    self.add(
                        "overlap",
                        f"overlap:{a.id}/{b.id}:{name}",
                        f"{'; '.join(found)}{example}: '{a.id}' ({attr} {getattr(a.then, attr)}) and '{b.id}' "
                        f"({attr} {getattr(b.then, attr)}) both hold",
                        b.pos,
                    )
                    break

    # -- rules that never fire or change nothing ---------------------------------------------------
    def masked(self, rules: Iterable[Rule], points: list[dict[str, object]], fired: list[list[Rule]]) -> None:
        for rule in rules:
            where = [i for i, f in enumerate(fired) if rule in f]
            if not where:
                self.add("never-fires", f"never-fires:{rule.id}", f"rule '{rule.id}' can never fire", rule.pos)
                continue
            if all(
                answer(self.doc, fired[i]).__dict__ | {"fired": ()}
                == answer(self.doc, [r for r in fired[i] if r is not rule]).__dict__ | {"fired": ()}
                for i in where
            ):
                self.add(
                    "masked",
                    f"masked:{rule.id}",
                    f"rule '{rule.id}' is masked: wherever it fires, other rules already decide all it sets",
                    rule.pos,
                )

    # -- catalogue entries nothing uses ------------------------------------------------------------
    def unused(self) -> None:
        doc = self.doc
        thens = [r.then for r in doc.rules] + [lv.then for lv in doc.levels if lv.then is not None]
        used_units = {u for t in thens for u in t.units} | {t.lead for t in thens if t.lead}
        used_units |= {m for g in doc.groups for m in g.members} | {g.lead for g in doc.groups if g.lead}
        used_units |= {w for o in doc.obligations for w in o.who}
        used_groups = {g for t in thens for g in t.groups}
        used_obligations = {o for t in thens for o in t.obligations}
        used_levels = {r.then.level for r in doc.rules if r.then.level}
        for kind, items, used in (
            ("unit", [(u.id, u.pos) for u in doc.units], used_units),
            ("group", [(g.id, g.pos) for g in doc.groups], used_groups),
            ("obligation", [(o.id, o.pos) for o in doc.obligations], used_obligations),
            ("level", [(lv.code, lv.pos) for lv in doc.levels], used_levels),
        ):
            for ident, pos in items:
                if ident not in used:
                    self.add("unused", f"unused-{kind}:{ident}", f"{kind} '{ident}' is used by no rule", pos)


def analyse(doc: RuleSetDocument) -> list[Finding]:
    """Every finding, those the document accepts marked with its reason, then stale `accept` entries."""
    found = _Analysis(doc).run()
    reasons = {a.finding: a.reason for a in doc.accepted}
    out = [Finding(f.kind, f.id, f.message, f.pos, reasons.get(f.id, "")) for f in found]
    ids = {f.id for f in found}
    for acc in doc.accepted:
        if acc.finding not in ids:
            out.append(
                Finding(
                    "stale-accept",
                    f"stale-accept:{acc.finding}",
                    "accepts a finding the analysis no longer makes",
                    acc.pos,
                )
            )
    return out


def unaccepted(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if not f.accepted]
