"""The rule document's model: what one version of one rule set declares.

Every object carries the position it was read from, so later checks and compilation can point a
rule author at the exact line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class Pos:
    """Where something was written: file, 1-based line and column, and the key path."""

    path: str
    line: int
    column: int
    key: str = ""


class Boundary(str, Enum):
    """How a document reads the Chinese statutory words 以上/以下 (see rules/README.md)."""

    CIVIL_CODE = "civil-code"
    ACCIDENT_GRADING = "accident-grading"


class InputType(str, Enum):
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"
    STRING = "string"


Scalar = int | float | bool | str


@dataclass(frozen=True)
class EnumValue:
    id: str
    label: str


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: InputType
    meaning: str
    pos: Pos
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    optional: bool = False
    default: Scalar | None = None
    values: tuple[EnumValue, ...] = ()
    max_length: int = 1000

    @property
    def numeric(self) -> bool:
        return self.type in (InputType.INTEGER, InputType.NUMBER)

    def enum_id(self, value: str) -> str | None:
        """The id of an enum value given by id or by label, or None if it is not one."""
        for v in self.values:
            if value == v.id or value == v.label:
                return v.id
        return None


@dataclass(frozen=True)
class Level:
    code: str
    name: str
    rank: int
    pos: Pos
    # What the plan requires whenever this level is the one decided, whichever rule decided it.
    then: "Then | None" = None
    citation: "Citation | None" = None


@dataclass(frozen=True)
class Citation:
    document: str
    clause: str

    def __str__(self) -> str:
        return f"{self.document} {self.clause}".strip()


@dataclass(frozen=True)
class Unit:
    id: str
    name: str
    duties: str
    citation: Citation
    pos: Pos


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    lead: str | None
    members: tuple[str, ...]
    duties: str
    citation: Citation
    pos: Pos
    where: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Obligation:
    id: str
    text: str
    who: tuple[str, ...]
    within_seconds: int | None
    within_text: str
    citation: Citation
    pos: Pos
    where: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)
    # `who: participating`: owed by every unit taking part in the incident, whichever they are.
    by_participants: bool = False


@dataclass(frozen=True)
class InputRef:
    """An operand that names another input of the same incident."""

    input: str


Operand = Scalar | InputRef | tuple[Scalar, ...]


@dataclass(frozen=True)
class Comparison:
    """`input OP operand`, with OP already a symbolic operator.

    `word` keeps what the author wrote (e.g. 以下) so explanations can quote it.
    """

    input: str
    op: str  # gte gt lte lt eq ne in between
    operand: Operand
    word: str
    pos: Pos


@dataclass(frozen=True)
class AllOf:
    items: tuple["Condition", ...]
    pos: Pos


@dataclass(frozen=True)
class AnyOf:
    items: tuple["Condition", ...]
    pos: Pos


@dataclass(frozen=True)
class Not:
    item: "Condition"
    pos: Pos


Condition = Comparison | AllOf | AnyOf | Not


@dataclass(frozen=True)
class Commander:
    role: str
    who: str


@dataclass(frozen=True)
class Then:
    level: str | None = None
    command_tier: str | None = None
    commanders: tuple[Commander, ...] | None = None
    lead: str | None = None
    units: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    obligations: tuple[str, ...] = ()
    # Where each reference was written, keyed "field:id" (e.g. "units:police"), for precise errors.
    where: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    citation: Citation
    when: Condition
    then: Then
    pos: Pos


@dataclass(frozen=True)
class Source:
    plan: str
    location: str


@dataclass(frozen=True)
class RuleSetDocument:
    """One version of one rule set, as written (checked but not compiled)."""

    ruleset: str
    version: str
    title: str
    source: Source
    effective_from: dt.date
    effective_until: dt.date | None
    incident_types: tuple[str, ...]
    boundary: Boundary
    inputs: tuple[InputSpec, ...]
    levels: tuple[Level, ...]
    units: tuple[Unit, ...]
    groups: tuple[Group, ...]
    obligations: tuple[Obligation, ...]
    rules: tuple[Rule, ...]
    path: str
    content_hash: str = ""
    raw: object = field(default=None, compare=False, repr=False)

    def input(self, name: str) -> InputSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def in_force(self, day: dt.date) -> bool:
        if day < self.effective_from:
            return False
        return self.effective_until is None or day <= self.effective_until
