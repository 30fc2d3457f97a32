"""Every loaded version of every rule set, compiled and registered, and how a request picks one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path

from liandong.document.load import load_tree
from liandong.document.model import RuleSetDocument
from liandong.engine import descriptor
from liandong.engine.combine import combine
from liandong.engine.compile import CompiledRuleSet, compile_document
from liandong.engine.result import Determination, Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import AmbiguousIncidentType, RuleSetNotFound, UnknownIncidentType
from liandong.suggest import closest

# The plans are Chinese; a version "in force from 2024-01-01" means from midnight Beijing time.
PLAN_TIMEZONE = dt.timezone(dt.timedelta(hours=8), "CST")


def plan_day(moment: dt.datetime) -> dt.date:
    """The calendar day in the plans' time zone; a naive time is taken as already in it."""
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(PLAN_TIMEZONE).date()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RuleBook:
    """An immutable snapshot of compiled rule sets; a reload builds a new one and swaps it in."""

    def __init__(
        self, docs: Iterable[RuleSetDocument], runtime: DurableRuntime, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        self.runtime = runtime
        self._clock = clock
        compiled = [compile_document(doc) for doc in docs]
        for c in compiled:
            runtime.register(c)
        self._by_ruleset: dict[str, tuple[CompiledRuleSet, ...]] = {}
        for c in sorted(compiled, key=lambda c: (c.document.ruleset, c.document.effective_from)):
            self._by_ruleset[c.document.ruleset] = self._by_ruleset.get(c.document.ruleset, ()) + (c,)
        # The book never changes, so neither do the claims; select() reads them on every request.
        claims: dict[str, list[str]] = {}
        for ruleset, versions in self._by_ruleset.items():
            for t in {t for c in versions for t in c.document.incident_types}:
                claims.setdefault(t, []).append(ruleset)
        self._types: dict[str, tuple[str, ...]] = {t: tuple(sorted(r)) for t, r in sorted(claims.items())}

    @classmethod
    def load(cls, root: Path, runtime: DurableRuntime, clock: Callable[[], dt.datetime] = _utcnow) -> RuleBook:
        """Load, check and compile every document below root (RuleDocumentInvalid lists all problems)."""
        return cls(load_tree(root), runtime, clock)

    # -- what is loaded ----------------------------------------------------------------------------
    def rulesets(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_ruleset))

    def versions(self, ruleset: str) -> tuple[CompiledRuleSet, ...]:
        """Every version of a rule set, oldest effective_from first."""
        if ruleset not in self._by_ruleset:
            raise RuleSetNotFound(
                f"no rule set '{ruleset}' is loaded", ruleset=ruleset, suggestion=closest(ruleset, self._by_ruleset)
            )
        return self._by_ruleset[ruleset]

    def incident_types(self) -> dict[str, tuple[str, ...]]:
        """Each incident type and the rule sets that claim it (a copy: callers may change it)."""
        return dict(self._types)

    def active(self, ruleset: str, at: dt.datetime | None = None) -> CompiledRuleSet:
        """The version in force at a moment (now by default): the latest effective_from not after it."""
        day = plan_day(at or self._clock())
        in_force = [c for c in self.versions(ruleset) if c.document.in_force(day)]
        if not in_force:
            raise RuleSetNotFound(
                f"no version of rule set '{ruleset}' is in force on {day.isoformat()}", ruleset=ruleset
            )
        return in_force[-1]

    # -- answering ---------------------------------------------------------------------------------
    def select(self, incident: Incident, ruleset: str = "", version: str = "") -> CompiledRuleSet:
        types = self._types
        if not ruleset:
            claimants = types.get(incident.type, ())
            if not claimants:
                raise UnknownIncidentType(incident.type, tuple(types), closest(incident.type, types))
            if len(claimants) > 1:
                raise AmbiguousIncidentType(incident.type, claimants)
            ruleset = claimants[0]
        versions = self.versions(ruleset)
        if version:
            chosen = next((c for c in versions if c.document.version == version), None)
            if chosen is None:
                known = [c.document.version for c in versions]
                raise RuleSetNotFound(
                    f"rule set '{ruleset}' has no version '{version}' (loaded: {', '.join(known)})",
                    ruleset=ruleset,
                    suggestion=closest(version, known),
                )
        else:
            chosen = self.active(ruleset, incident.occurred_at)
        if incident.type not in chosen.document.incident_types:
            claimed = chosen.document.incident_types
            raise UnknownIncidentType(incident.type, claimed, closest(incident.type, claimed))
        return chosen

    def determine(
        self, incident: Incident, ruleset: str = "", version: str = "", explain: bool = False
    ) -> Determination:
        """What the plan in force requires for the incident, and which clauses say so."""
        compiled = self.select(incident, ruleset, version)
        return evaluate(self.runtime, compiled, incident, explain)


def evaluate(
    runtime: DurableRuntime, compiled: CompiledRuleSet, incident: Incident, explain: bool = False
) -> Determination:
    """Check the facts (each against its input, not empty, then the document's cross-input checks),
    fire the rules in durable-rules, and combine what fired."""
    doc = compiled.document
    facts = descriptor.normalize(doc, incident.facts, compiled.inputs)
    descriptor.refuse_empty(doc, incident.facts)  # after normalize: an unknown or missing field says more
    if doc.checks:
        descriptor.cross_check(doc, facts)
    flags = descriptor.presence_flags(doc, facts, compiled.inputs)
    fired = runtime.fire(compiled.name, {**facts, **flags} if flags else facts)  # fire() only reads the fact
    return combine(compiled.answers, incident, facts, fired, explain)
