"""The one exception hierarchy of Liandong.

LiandongError
├── RuleDocumentError          a rule document (or a set of them) cannot be used
│   └── RuleDocumentInvalid    located problems, every one of them, not just the first
└── EvaluationError            an incident could not be evaluated
    ├── InvalidIncident        facts break the rule set's inputs (every violation listed)
    ├── UnknownIncidentType    no loaded rule set answers for the incident type
    ├── RuleSetNotFound        the named rule set or version is not loaded
    ├── AmbiguousIncidentType  several rule sets claim the type and none was named
    ├── EngineFailure          the rules engine itself failed
    └── DeadlineUnknown        a due time needs calendar years the official calendar does not know yet
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Problem:
    """One located problem in a rule document, in words a rule author understands."""

    path: str
    line: int
    column: int
    message: str
    key: str = ""
    ruleset: str = ""
    rule_id: str = ""
    suggestion: str = ""

    def __str__(self) -> str:
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        return f"{self.path}:{self.line}:{self.column}: {self.message}{hint}"


@dataclass(frozen=True)
class FieldViolation:
    """One way an incident's facts break the rule set's inputs."""

    field: str  # an input's name; empty for the facts as a whole
    description: str
    reason: str  # stable machine code, e.g. "missing", "wrong_type", "out_of_range"


class LiandongError(Exception):
    """Root of every error Liandong raises on purpose."""

    code: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        ruleset: str = "",
        rule_id: str = "",
        path: str = "",
        line: int = 0,
        column: int = 0,
        suggestion: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.ruleset = ruleset
        self.rule_id = rule_id
        self.path = path
        self.line = line
        self.column = column
        self.suggestion = suggestion


class RuleDocumentError(LiandongError):
    """A rule document cannot be loaded or used."""

    code = "invalid_document"


class RuleDocumentInvalid(RuleDocumentError):
    """A rule document has one or more located problems."""

    def __init__(self, problems: tuple[Problem, ...] | list[Problem]) -> None:
        problems = tuple(problems)
        if not problems:
            raise ValueError("RuleDocumentInvalid needs at least one problem")
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"{first}{more}",
            ruleset=first.ruleset,
            rule_id=first.rule_id,
            path=first.path,
            line=first.line,
            column=first.column,
            suggestion=first.suggestion,
        )
        self.problems = problems


class EvaluationError(LiandongError):
    """An incident could not be evaluated."""

    code = "evaluation_failed"


class InvalidIncident(EvaluationError):
    """The incident's facts break the rule set's inputs; every violation is listed."""

    code = "invalid_incident"

    def __init__(self, ruleset: str, violations: tuple[FieldViolation, ...] | list[FieldViolation]) -> None:
        violations = tuple(violations)
        listed = "; ".join(f"{v.field}: {v.description}" if v.field else v.description for v in violations)
        super().__init__(f"incident rejected by rule set '{ruleset}': {listed}", ruleset=ruleset)
        self.violations = violations


class UnknownIncidentType(EvaluationError):
    """No loaded rule set answers for the incident type."""

    code = "unknown_incident_type"

    def __init__(self, incident_type: str, known: tuple[str, ...], suggestion: str = "") -> None:
        listed = ", ".join(known) or "none"
        super().__init__(
            f"no rule set answers for incident type '{incident_type}' (known types: {listed})",
            suggestion=suggestion,
        )
        self.incident_type = incident_type
        self.known = known


class RuleSetNotFound(EvaluationError):
    """The named rule set, or the version asked for, is not loaded."""

    code = "ruleset_not_found"


class AmbiguousIncidentType(EvaluationError):
    """Several rule sets claim the incident type and the caller named none of them."""

    code = "ambiguous_incident_type"

    def __init__(self, incident_type: str, candidates: tuple[str, ...]) -> None:
        super().__init__(
            f"incident type '{incident_type}' is claimed by several rule sets "
            f"({', '.join(candidates)}); name one with 'ruleset'"
        )
        self.incident_type = incident_type
        self.candidates = candidates


class EngineFailure(EvaluationError):
    """The rules engine failed while evaluating; the incident itself was acceptable."""

    code = "engine_failure"


class DeadlineUnknown(EvaluationError):
    """A due time falls in a year the official working-day calendar does not know yet: it is not
    guessed (a year's 放假安排 and 调休 working weekends are published only late the year before)."""

    code = "deadline_unknown"

    def __init__(self, message: str, *, year: int, known_until: int) -> None:
        super().__init__(message)
        self.year = year
        self.known_until = known_until


class IncidentError(LiandongError):
    """A call about a followed incident (IncidentService) was refused, or its record cannot be reached."""

    code = "incident_refused"

    def __init__(self, message: str, *, field: str = "", reason: str = "", ruleset: str = "") -> None:
        super().__init__(message, ruleset=ruleset)
        self.field = field  # the request field at fault, for a BadRequest field violation
        self.reason = reason or self.code


class IncidentNotFound(IncidentError):
    """No incident has this id."""

    code = "incident_not_found"


class IncidentClosed(IncidentError):
    """The incident was closed (响应终止): nothing may change it any more."""

    code = "incident_closed"


class IncidentRequestInvalid(IncidentError):
    """A field of the call cannot be used: a changed type, a level the rule set lacks, a missing reason."""

    code = "incident_request_invalid"


class StoreUnavailable(IncidentError):
    """The incident store cannot be reached; nothing of the call was written."""

    code = "store_unavailable"
