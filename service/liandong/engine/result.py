"""What an evaluation answers: frozen values, safe to share between threads and cache."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TypeVar

# Answers cite clauses with the document's own frozen Citation: an answer's citation is the clause the
# document names, with nothing added, so a second type of the same shape would only be copied into.
from liandong.document.model import Citation, Deadline, Timing


@dataclass(frozen=True)
class Incident:
    """An incident descriptor as a caller sends it; `facts` are named by the rule set's inputs."""

    type: str
    facts: dict[str, object] = field(default_factory=dict)
    id: str = ""
    occurred_at: dt.datetime | None = None


@dataclass(frozen=True)
class LevelResult:
    code: str
    name: str
    rank: int
    citation: Citation | None = None  # the clause for what this level requires, if it says
    citations: tuple[Citation, ...] = ()  # every clause cited; `citation` is the first


@dataclass(frozen=True)
class UnitResult:
    id: str
    name: str
    duties: str
    citation: Citation
    citations: tuple[Citation, ...] = ()  # every clause cited; `citation` is the first
    member: bool = True  # one of the plan's 成员单位


@dataclass(frozen=True)
class GroupResult:
    id: str
    name: str
    lead: UnitResult | None
    members: tuple[UnitResult, ...]
    duties: str
    citation: Citation
    citations: tuple[Citation, ...] = ()


@dataclass(frozen=True)
class CommanderResult:
    role: str
    who: str


@dataclass(frozen=True)
class ObligationResult:
    id: str
    text: str
    who: tuple[UnitResult, ...]
    within_seconds: int | None  # 0 when due at once; None when promptly or no time is given
    within_text: str  # the fixed limit as written (20m), else empty
    citation: Citation
    citations: tuple[Citation, ...] = ()
    timing: Timing = Timing.NONE
    deadline: Deadline = field(default_factory=Deadline)


@dataclass(frozen=True)
class ConditionTrace:
    """One condition of a rule as evaluated: what it says, the values it saw, whether it held."""

    expression: str
    actual: str
    holds: bool
    children: tuple[ConditionTrace, ...] = ()


@dataclass(frozen=True)
class MatchedRule:
    id: str
    title: str
    citation: Citation
    conditions: ConditionTrace | None = None  # only with explain
    citations: tuple[Citation, ...] = ()


@dataclass(frozen=True)
class AssumedInput:
    """An input the caller did not send, and the rule set's default the rules used instead."""

    input: str
    value: object  # as the rules saw it: an enum as its id
    meaning: str


@dataclass(frozen=True)
class Determination:
    """What the plan requires for one incident, and which clauses say so."""

    ruleset: str
    version: str
    content_hash: str
    incident_id: str
    incident_type: str
    applies: bool
    level: LevelResult | None
    command_tier: str
    commanders: tuple[CommanderResult, ...]
    lead: UnitResult | None
    units: tuple[UnitResult, ...]
    groups: tuple[GroupResult, ...]
    obligations: tuple[ObligationResult, ...]
    matched_rules: tuple[MatchedRule, ...]
    facts: dict[str, object] = field(default_factory=dict)  # as evaluated: defaults filled, enums as ids
    unmatched_rules: tuple[MatchedRule, ...] = ()  # only with explain: rules that did not fire, and why
    assumed: tuple[AssumedInput, ...] = ()  # every input taken from its default, in document order


def determination(
    *,
    ruleset: str,
    version: str,
    content_hash: str,
    incident_id: str,
    incident_type: str,
    applies: bool,
    level: LevelResult | None,
    command_tier: str,
    commanders: tuple[CommanderResult, ...],
    lead: UnitResult | None,
    units: tuple[UnitResult, ...],
    groups: tuple[GroupResult, ...],
    obligations: tuple[ObligationResult, ...],
    matched_rules: tuple[MatchedRule, ...],
    facts: dict[str, object],
    unmatched_rules: tuple[MatchedRule, ...],
    assumed: tuple[AssumedInput, ...],
) -> Determination:
    """`Determination(...)` with every field given, for combine, which makes one per answer: the
    same object, built without the frozen dataclass's `object.__setattr__` per field (about 1.5 µs
    of each answer). Determination has no __post_init__ to skip; tests/test_engine_combine_paths.py
    checks that, and that the fields here are the class's, in its order."""
    return _built(
        Determination,
        ruleset=ruleset,
        version=version,
        content_hash=content_hash,
        incident_id=incident_id,
        incident_type=incident_type,
        applies=applies,
        level=level,
        command_tier=command_tier,
        commanders=commanders,
        lead=lead,
        units=units,
        groups=groups,
        obligations=obligations,
        matched_rules=matched_rules,
        facts=facts,
        unmatched_rules=unmatched_rules,
        assumed=assumed,
    )


def incident(
    *, incident_type: str, facts: dict[str, object], incident_id: str, occurred_at: dt.datetime | None
) -> Incident:
    """`Incident(...)` with every field given, for the server, which makes one per request: the same
    object, built as `determination` builds its (tests/test_convert_equivalence.py checks the fields)."""
    return _built(Incident, type=incident_type, facts=facts, id=incident_id, occurred_at=occurred_at)


_Frozen = TypeVar("_Frozen")


def _built(cls: type[_Frozen], **fields: object) -> _Frozen:
    """An instance of a frozen dataclass without __post_init__, its fields set at once in its
    __dict__ instead of one `object.__setattr__` each. Callers name every field, in class order."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj
