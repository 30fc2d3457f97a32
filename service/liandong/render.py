"""Showing a determination to a person (text) or a program (JSON)."""

from __future__ import annotations

import dataclasses
import json

from liandong.document.model import INCIDENT_REPORTED, Citation, InputSpec, InputType, Repeat, RuleSetDocument, Timing
from liandong.engine.result import ConditionTrace, Determination, ObligationResult
from liandong.engine.trace import show


def to_json(det: Determination) -> str:
    return json.dumps(dataclasses.asdict(det), ensure_ascii=False, indent=2, default=str)


def _cited(one: Citation | None, every: tuple[Citation, ...], clause_only: bool = False) -> str:
    """Every clause cited, joined; answers from an old server carry only the first."""
    shown = every or ((one,) if one is not None else ())
    return "; ".join(c.clause if clause_only else str(c) for c in shown)


def _timing(o: ObligationResult) -> str:
    d = o.deadline
    clock = f" [clock: {d.start}]" if d.start != INCIDENT_REPORTED else ""
    if o.timing is Timing.CALENDAR or d.repeat is not Repeat.ONCE:
        return f" 时限 {d.wording}{clock}"
    if o.timing is Timing.AT_ONCE or (o.timing is Timing.NONE and o.within_seconds == 0):
        return " 立即/at once" + clock
    if o.timing is Timing.PROMPTLY:
        return " 及时/promptly (no time)" + clock
    return (f" within {o.within_text}" if o.within_text else "") + clock


def _trace_lines(t: ConditionTrace, depth: int) -> list[str]:
    mark = "✓" if t.holds else "✗"
    pad = "    " * depth
    head = f"{pad}{mark} {t.expression}" + (f"   [{t.actual}]" if t.actual else "")
    lines = [head]
    for child in t.children:
        lines.extend(_trace_lines(child, depth + 1))
    return lines


def to_text(det: Determination, explain: bool = False) -> str:
    out = [f"rule set   {det.ruleset} {det.version} (sha256 {det.content_hash[:12]})"]
    if not det.applies:
        out.append("result     no rule of this plan applies to the incident: nothing to do under it")
    if det.level:
        cited = _cited(det.level.citation, det.level.citations)
        cited = f" — {cited}" if cited else ""
        out.append(f"level      {det.level.code} {det.level.name} (rank {det.level.rank}){cited}")
    if det.command_tier:
        out.append(f"command    {det.command_tier}")
    for c in det.commanders:
        out.append(f"           {c.role}: {c.who}")
    if det.lead:
        out.append(f"lead       {det.lead.name} [{det.lead.id}]")
    if det.units:
        out.append("units")
        for u in det.units:
            out.append(f"  - {u.name} [{u.id}] ({_cited(u.citation, u.citations, True)}): {u.duties}")
    if det.groups:
        out.append("groups")
        for g in det.groups:
            lead = f" lead {g.lead.name};" if g.lead else ""
            members = "、".join(m.name for m in g.members)
            out.append(f"  - {g.name} [{g.id}] ({_cited(g.citation, g.citations, True)}):{lead} members {members}")
            out.append(f"      {g.duties}")
    if det.obligations:
        out.append("obligations")
        for o in det.obligations:
            who = "、".join(u.name for u in o.who)
            out.append(
                f"  - {o.text}{_timing(o)}"
                + (f" — {who}" if who else "")
                + f" ({_cited(o.citation, o.citations, True)})"
            )
    if det.assumed:
        out.append("assumed    (not sent: the rule set's defaults were used)")
        for a in det.assumed:
            out.append(f"  - {a.input} = {show(a.value)} ({a.meaning})")
    if det.matched_rules:
        out.append("because")
        for r in det.matched_rules:
            out.append(f"  - {r.id}: {r.title} — {_cited(r.citation, r.citations)}")
            if explain and r.conditions:
                out.extend(_trace_lines(r.conditions, 2))
    if explain and det.unmatched_rules:
        out.append("not matched")
        for r in det.unmatched_rules:
            out.append(f"  - {r.id}: {r.title}")
            if r.conditions:
                out.extend(_trace_lines(r.conditions, 2))
    if explain:
        facts = ", ".join(f"{k}={show(v)}" for k, v in det.facts.items())
        out.append(f"facts      {facts}")
    return "\n".join(out)


def _presence(spec: InputSpec) -> str:
    if spec.required:
        return "**required**"
    if spec.optional:
        return "optional (absent: rules on it do not apply)"
    default = spec.default
    if spec.type is InputType.ENUM:
        label = next((v.label for v in spec.values if v.id == default), "")
        return f"default `{default}` ({label})"
    if isinstance(default, bool):
        return f"default `{'true' if default else 'false'}`"
    return f"default `{default}`"


def _kind(spec: InputSpec) -> str:
    text = spec.type.value
    if spec.type is InputType.ENUM:
        text += ": " + ", ".join(f"`{v.id}` {v.label}" for v in spec.values)
    if spec.minimum is not None or spec.maximum is not None:
        low = "" if spec.minimum is None else f"{spec.minimum:g}"
        high = "" if spec.maximum is None else f"{spec.maximum:g}"
        text += f" [{low}, {high}]"
    if spec.unit:
        text += f" ({spec.unit})"
    return text


def inputs_markdown(doc: RuleSetDocument) -> str:
    """The inputs a caller sends for one rule set, as a Markdown table."""
    title = f"### `{doc.ruleset}` {doc.version} — incident type {', '.join(f'`{t}`' for t in doc.incident_types)}"
    if not doc.inputs:
        return f"{title}\n\nNo inputs: the plan conditions nothing on the facts; send none (any fact is refused)."
    lines = [
        title,
        "",
        "| input | type | required / default | meaning |",
        "|---|---|---|---|",
    ]
    for spec in doc.inputs:
        lines.append(f"| `{spec.name}` | {_kind(spec)} | {_presence(spec)} | {spec.meaning} |")
    return "\n".join(lines)
