"""Shadow replay: recorded incidents answered again under a candidate version, and the answers that
would change (`liandong replay --against VERSION`, and `serve --shadow` on reload).

Incidents come from any iterable of `Incident` or `Recorded`; `read_jsonl` reads the JSON-lines file
the replay client also reads, and liandong.store.recorded reads the incident store (`Recorded`: the
merged facts, and the rule set and version each incident was judged under).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

from liandong.engine.result import Determination, Incident
from liandong.errors import EvaluationError
from liandong.rulebook import RuleBook


@dataclass(frozen=True)
class Recorded:
    """An incident as the incident store keeps it: its merged facts, and the rule set and version it was
    judged under (fixed when it opened), which is what the replay compares with unless told otherwise."""

    incident: Incident
    ruleset: str
    version: str


class IncidentSource(Protocol):
    """Where recorded incidents come from: a JSONL file, or the incident store (liandong.store.recorded)."""

    def __call__(self) -> Iterable[Incident | Recorded]: ...


class BadLine(ValueError):
    """A line of the incidents file that is not an incident."""


def read_jsonl(stream: IO[str]) -> Iterator[Incident]:
    """Incidents as JSON lines: {"id", "type", "facts", "occurred_at"} (blank lines skipped)."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            occurred = dt.datetime.fromisoformat(item["occurred_at"]) if item.get("occurred_at") else None
            facts = item.get("facts", {})
            if not isinstance(facts, dict) or not isinstance(item["type"], str):
                raise TypeError("type must be text and facts a mapping")
            yield Incident(type=item["type"], facts=facts, id=str(item.get("id", number)), occurred_at=occurred)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadLine(f"line {number}: not an incident ({exc})") from None


def summary(det: Determination | EvaluationError) -> str:
    """An answer in one line: level, lead, units, groups, obligations (or the refusal)."""
    if isinstance(det, EvaluationError):
        return f"refused: {det.code}"
    level = det.level.code if det.level else "-"
    lead = det.lead.id if det.lead else "-"
    return (
        f"level {level}; lead {lead}; units [{', '.join(u.id for u in det.units)}]; "
        f"groups [{', '.join(g.id for g in det.groups)}]; obligations [{', '.join(o.id for o in det.obligations)}]"
    )


def _key(det: Determination | EvaluationError) -> object:
    if isinstance(det, EvaluationError):
        return ("refused", det.code)
    return (
        det.level.code if det.level else None,
        det.lead.id if det.lead else None,
        det.command_tier,
        tuple(u.id for u in det.units),
        tuple(g.id for g in det.groups),
        tuple(o.id for o in det.obligations),
    )


@dataclass(frozen=True)
class Difference:
    """One incident whose answer would change, and the rules that made the difference."""

    incident: str
    ruleset: str
    old_version: str
    new_version: str
    old: str
    new: str
    rules: tuple[str, ...]  # fired under one version and not the other (+ new, - old)

    def to_json(self) -> dict[str, object]:
        return {
            "incident": self.incident,
            "ruleset": self.ruleset,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "old": self.old,
            "new": self.new,
            "rules": list(self.rules),
        }


@dataclass(frozen=True)
class Replay:
    compared: int
    differences: tuple[Difference, ...]
    skipped: tuple[str, ...]  # incidents not of the rule set, each with why

    @property
    def changed(self) -> int:
        return len(self.differences)


def _answer(
    book: RuleBook, incident: Incident, ruleset: str, version: str
) -> tuple[str, Determination | EvaluationError]:
    try:
        chosen = book.select(incident, ruleset, version)
    except EvaluationError as exc:
        return "", exc
    try:
        return chosen.document.version, book.determine(incident, ruleset, chosen.document.version)
    except EvaluationError as exc:
        return chosen.document.version, exc


def replay(
    book: RuleBook,
    incidents: Iterable[Incident | Recorded],
    against: str = "",
    ruleset: str = "",
    base: str = "",
    candidate: RuleBook | None = None,
) -> Replay:
    """Answer each incident as it is answered now (`base` version, default the one in force when it
    occurred, or for a `Recorded` incident the version it was judged under) and under the candidate
    version `against` (in `candidate`, default the same book; an empty `against` there means the
    version the candidate book has in force)."""
    candidate = candidate or book
    compared = 0
    differences: list[Difference] = []
    skipped: list[str] = []
    for item in incidents:
        judged_by, judged_under = ("", "")
        if isinstance(item, Recorded):
            incident, judged_by, judged_under = item.incident, item.ruleset, item.version
        else:
            incident = item
        name = ruleset or judged_by or next(iter(book.incident_types().get(incident.type, ())), "")
        if not name:
            skipped.append(f"{incident.id}: no rule set answers incident type '{incident.type}'")
            continue
        old_version, old = _answer(book, incident, name, base or (judged_under if name == judged_by else ""))
        new_version, new = _answer(candidate, incident, name, against)
        if not new_version:
            skipped.append(f"{incident.id}: {new.message if isinstance(new, EvaluationError) else ''}")
            continue
        compared += 1
        if _key(old) != _key(new):
            fired_old = {r.id for r in old.matched_rules} if isinstance(old, Determination) else set()
            fired_new = {r.id for r in new.matched_rules} if isinstance(new, Determination) else set()
            rules = tuple(f"+{r}" for r in sorted(fired_new - fired_old)) + tuple(
                f"-{r}" for r in sorted(fired_old - fired_new)
            )
            found = Difference(incident.id, name, old_version, new_version, summary(old), summary(new), rules)
            differences.append(found)
    return Replay(compared, tuple(differences), tuple(skipped))
