"""Compiling a checked rule document into a durable-rules ruleset (its JSON form).

Each rule becomes one durable-rules rule over the incident fact. Conditions are rewritten into
negation normal form, because durable-rules has no general `not`; and tests for absent inputs
use explicit presence flags, because `$ex`/`$nex` crash durable-rules 2.0.28 (segfault, measured).

Every ruleset also gets an anchor rule that matches every fact. Without it, a fact that no rule
matches still leaves a session behind (the 1025th then raises MemoryError), and deleting that
session can crash the process (segfault, measured); with it, every evaluation takes the one path
that was measured safe over 200 000 evaluations: match, then delete the session.
"""

from __future__ import annotations

from dataclasses import dataclass

from liandong.document.model import AllOf, AnyOf, Comparison, Condition, InputRef, Not, RuleSetDocument
from liandong.document.words import NEGATION
from liandong.engine.combine import Prepared
from liandong.engine.descriptor import PRESENT_PREFIX, InputTable

Json = dict[str, object]

ANCHOR_RULE = "_liandong_anchor"  # rule ids start with a letter or digit, so never collide
ANCHOR_FIELD = "_anchor"

_DURABLE_OP = {"gte": "$gte", "gt": "$gt", "lte": "$lte", "lt": "$lt", "ne": "$neq"}


@dataclass(frozen=True)
class CompiledRuleSet:
    """A document and the durable-rules definition that evaluates it."""

    document: RuleSetDocument
    name: str  # unique per version and content, since durable-rules cannot replace a ruleset
    rules: dict[str, Json]  # durable-rules rule name -> definition (without the action)
    answers: Prepared  # the document's answer pieces, shared by every evaluation
    inputs: InputTable  # the document's inputs arranged for checking facts


def durable_name(doc: RuleSetDocument) -> str:
    return f"{doc.ruleset}@{doc.version}#{doc.content_hash[:16]}"


def compile_document(doc: RuleSetDocument) -> CompiledRuleSet:
    optional = frozenset(spec.name for spec in doc.inputs if spec.optional)
    rules: dict[str, Json] = {rule.id: {"all": [{"m": _expr(rule.when, False, optional)}]} for rule in doc.rules}
    rules[ANCHOR_RULE] = {"all": [{"m": {ANCHOR_FIELD: True}}]}
    return CompiledRuleSet(doc, durable_name(doc), rules, Prepared(doc), InputTable(doc))


def _expr(cond: Condition, negate: bool, optional: frozenset[str]) -> Json:
    if isinstance(cond, Not):
        return _expr(cond.item, not negate, optional)
    if isinstance(cond, AllOf) and not cond.items:
        # The unconditional rule (`all: []`): every fact carries the anchor field, true.
        return {ANCHOR_FIELD: not negate}
    if isinstance(cond, (AllOf, AnyOf)):
        conjunction = isinstance(cond, AllOf) != negate  # De Morgan
        return {"$and" if conjunction else "$or": [_expr(c, negate, optional) for c in cond.items]}
    return _comparison(cond, negate, optional)


def _comparison(cmp: Comparison, negate: bool, optional: frozenset[str]) -> Json:
    core = _core(cmp, negate)
    needed = [cmp.input]
    if isinstance(cmp.operand, InputRef):
        needed.append(cmp.operand.input)
    flags = [PRESENT_PREFIX + name for name in needed if name in optional]
    if not flags:
        return core
    # An absent input makes the comparison false, so its negation true.
    if negate:
        return {"$or": [{flag: False} for flag in flags] + [core]}
    return {"$and": [{flag: True} for flag in flags] + [core]}


def _atom(op: str, name: str, operand: object) -> Json:
    right = {"$m": operand.input} if isinstance(operand, InputRef) else operand
    if op == "eq":
        return {name: right}
    return {_DURABLE_OP[op]: {name: right}}


def _core(cmp: Comparison, negate: bool) -> Json:
    name, op, operand = cmp.input, cmp.op, cmp.operand
    if op == "in":
        assert isinstance(operand, tuple)
        if negate:
            return {"$and": [_atom("ne", name, v) for v in operand]}
        return {"$or": [_atom("eq", name, v) for v in operand]}
    if op == "between":
        assert isinstance(operand, tuple)
        low, high = operand
        if negate:
            return {"$or": [_atom("lt", name, low), _atom("gt", name, high)]}
        return {"$and": [_atom("gte", name, low), _atom("lte", name, high)]}
    return _atom(NEGATION[op] if negate else op, name, operand)
