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
    # The resolution of a `number` input (e.g. 0.01 for a water level in metres): the nearest value
    # on the other side of a threshold, for boundary coverage. None: one digit finer than the threshold.
    step: float | None = None

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
    then: Then | None = None
    citations: tuple[Citation, ...] = ()

    @property
    def citation(self) -> Citation | None:
        """The first clause cited (what callers that know one citation show)."""
        return self.citations[0] if self.citations else None


@dataclass(frozen=True)
class Citation:
    document: str
    clause: str

    def __str__(self) -> str:
        return f"{self.document} {self.clause}".strip()


class Cited:
    """Something that cites at least one clause; `citation` is the first of them."""

    citations: tuple[Citation, ...]

    @property
    def citation(self) -> Citation:
        return self.citations[0]


@dataclass(frozen=True)
class Unit(Cited):
    id: str
    name: str
    duties: str
    citations: tuple[Citation, ...]
    pos: Pos
    # False for a body that is not one of the plan's 成员单位 (e.g. the HQ that 下达指令).
    member: bool = True


@dataclass(frozen=True)
class Group(Cited):
    id: str
    name: str
    lead: str | None
    members: tuple[str, ...]
    duties: str
    citations: tuple[Citation, ...]
    pos: Pos
    where: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


class Timing(str, Enum):
    """How an obligation's time is given (rules/README.md, "Obligations")."""

    NONE = "none"  # the plan gives no time
    WITHIN = "within"  # a fixed limit: within_seconds > 0
    AT_ONCE = "at_once"  # 立即 / 第一时间 / 零时间: due at once, the deadline is the start
    PROMPTLY = "promptly"  # 及时 / 迅速: promptly, with no number; never a deadline
    CALENDAR = "calendar"  # a deadline on the calendar: days, working days, the same day, a time of day


INCIDENT_REPORTED = "incident_reported"
# The events an obligation's clock may start at (rules/README.md, "Obligation timing"): facts or
# events the incident API receives. The first is the default.
START_EVENTS = (INCIDENT_REPORTED, "request_received", "order_issued", "instruction_received", "complaint_received")


class DeadlineKind(str, Enum):
    """How the first due time of an obligation is computed from its start (rules/README.md)."""

    NONE = "none"  # no time stated
    AT_ONCE = "at_once"  # 立即 / 第一时间 / 零时间 / 即发即报: due at the start
    PROMPTLY = "promptly"  # 及时 / 迅速 / 随时: no number, never falls due
    ELAPSED = "elapsed"  # 20分钟内, 1小时内: start + a fixed duration
    CALENDAR_DAYS = "calendar_days"  # 5日内: 24:00 of the Nth day after the start day
    WORKING_DAYS = "working_days"  # 10个工作日内: 24:00 of the Nth working day after the start day
    SAME_DAY = "same_day"  # 当天: 24:00 of the start's day
    TIME_OF_DAY = "time_of_day"  # 8:00点前: the first such wall-clock time after the start


class Repeat(str, Enum):
    """Whether an obligation falls due again after its first due time, until the incident closes."""

    ONCE = "once"
    INTERVAL = "interval"  # every N minutes or hours
    DAILY = "daily"  # every day at the time of day (每日8:00点前)
    CONTINUING = "continuing"  # 续报 with no interval (随后报送, 连续完整报告): never falls due


@dataclass(frozen=True)
class Deadline:
    """An obligation's clock as the document writes it. Wall-clock kinds read Beijing time (UTC+8)."""

    kind: DeadlineKind = DeadlineKind.NONE
    start: str = INCIDENT_REPORTED
    seconds: int = 0  # ELAPSED: the duration
    days: int = 0  # CALENDAR_DAYS, WORKING_DAYS
    time_of_day: str = ""  # TIME_OF_DAY: "HH:MM", Beijing time
    latest_seconds: int | None = None  # 最迟不得超过: start + this is the hard deadline (with SAME_DAY)
    repeat: Repeat = Repeat.ONCE
    every_seconds: int = 0  # INTERVAL
    # Whether a report at the due instant itself is in time (boundary words on time, rules/README.md).
    end_included: bool = True
    wording: str = ""  # the deadline in the plan's kind of words, e.g. 10个工作日内(自接到投诉)


@dataclass(frozen=True)
class Obligation(Cited):
    id: str
    text: str
    who: tuple[str, ...]
    within_seconds: int | None  # 0 for at_once, None for promptly and none
    within_text: str
    citations: tuple[Citation, ...]
    pos: Pos
    where: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)
    # `who: participating`: owed by every unit taking part in the incident, whichever they are.
    by_participants: bool = False
    # `who: members`: owed by every participating unit that is a member unit (Unit.member).
    by_members: bool = False
    timing: Timing = Timing.NONE
    deadline: Deadline = field(default_factory=Deadline)


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
    items: tuple[Condition, ...]
    pos: Pos


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]
    pos: Pos


@dataclass(frozen=True)
class Not:
    item: Condition
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
class Rule(Cited):
    id: str
    title: str
    citations: tuple[Citation, ...]
    when: Condition
    then: Then
    pos: Pos


@dataclass(frozen=True)
class Check:
    """A cross-input check (`checks:`): an incident whose inputs break `require` is refused.

    `inputs` are every input the condition names; the check applies only when all have a value,
    so a missing optional detail never turns into a refusal."""

    id: str
    require: Condition
    message: str
    citations: tuple[Citation, ...]  # optional: may be empty
    pos: Pos
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class Accepted:
    """An analysis finding the document accepts on purpose (`accept:`), with the reason why."""

    finding: str
    reason: str
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
    checks: tuple[Check, ...] = ()
    # `empty_report: meaningful`: an incident with no facts at all is answered (on the defaults)
    # instead of refused.
    empty_report_meaningful: bool = False
    # Findings of the rule-author analysis the document accepts by design (liandong.document.analysis).
    accepted: tuple[Accepted, ...] = ()

    def input(self, name: str) -> InputSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def in_force(self, day: dt.date) -> bool:
        if day < self.effective_from:
            return False
        return self.effective_until is None or day <= self.effective_until
