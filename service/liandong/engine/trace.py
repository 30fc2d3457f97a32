"""Explaining a rule: each condition with the values it saw and whether it held.

This evaluates the checked conditions directly in Python with the same semantics as the compiled
durable-rules form (an absent optional input makes a comparison false). Firing is decided by
durable-rules; the trace says why, and a disagreement between the two is an engine failure.
"""

from __future__ import annotations

from collections.abc import Mapping

from liandong.document.model import AllOf, AnyOf, Comparison, Condition, InputRef, Not
from liandong.document.words import SYMBOLS, WORDS
from liandong.engine.result import ConditionTrace


def show(value: object) -> str:
    """A value as a rule author writes it (true, 3, 决口)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _holds(op: str, left: object, right: object) -> bool:
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if op == "in":
        assert isinstance(right, tuple)
        return left in right
    if op == "between":
        assert isinstance(right, tuple)
        return bool(right[0] <= left <= right[1])
    if op == "gte":
        return bool(left >= right)  # type: ignore[operator]
    if op == "gt":
        return bool(left > right)  # type: ignore[operator]
    if op == "lte":
        return bool(left <= right)  # type: ignore[operator]
    if op == "lt":
        return bool(left < right)  # type: ignore[operator]
    raise ValueError(f"unknown operator {op}")


def describe(cmp: Comparison) -> str:
    """The comparison as written, with its symbolic meaning when a statutory word was used."""
    operand = cmp.operand
    if isinstance(operand, InputRef):
        shown = operand.input
    elif isinstance(operand, tuple):
        shown = "[" + ", ".join(show(v) for v in operand) + "]"
    else:
        shown = show(operand)
    text = f"{cmp.input} {cmp.word} {shown}"
    if cmp.word in WORDS:
        text += f" ({SYMBOLS[cmp.op]} {shown})"
    return text


def holds(cond: Condition, facts: Mapping[str, object]) -> bool:
    """Whether the condition holds for the facts (as `evaluate(...).holds`, without the trace)."""
    if isinstance(cond, Not):
        return not holds(cond.item, facts)
    if isinstance(cond, AllOf):
        return all(holds(c, facts) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(holds(c, facts) for c in cond.items)
    if cond.input not in facts:
        return False
    if isinstance(cond.operand, InputRef):
        if cond.operand.input not in facts:
            return False
        return _holds(cond.op, facts[cond.input], facts[cond.operand.input])
    return _holds(cond.op, facts[cond.input], cond.operand)


def evaluate(cond: Condition, facts: Mapping[str, object]) -> ConditionTrace:
    if isinstance(cond, Not):
        inner = evaluate(cond.item, facts)
        return ConditionTrace("not", "", not inner.holds, (inner,))
    if isinstance(cond, AllOf):
        items = tuple(evaluate(c, facts) for c in cond.items)
        return ConditionTrace("all", "", all(i.holds for i in items), items)
    if isinstance(cond, AnyOf):
        items = tuple(evaluate(c, facts) for c in cond.items)
        return ConditionTrace("any", "", any(i.holds for i in items), items)
    names = [cond.input] + ([cond.operand.input] if isinstance(cond.operand, InputRef) else [])
    actual = ", ".join(f"{n} = {show(facts[n])}" if n in facts else f"{n} not given" for n in names)
    if any(n not in facts for n in names):
        return ConditionTrace(describe(cond), actual, False)
    right = facts[cond.operand.input] if isinstance(cond.operand, InputRef) else cond.operand
    return ConditionTrace(describe(cond), actual, _holds(cond.op, facts[cond.input], right))
