"""The rule book serving now, and how a new one replaces it.

A reload loads and checks every document, compiles it, and runs every fixture against the new book
before swapping it in with one reference assignment, together with the answer codecs built for
it. Requests hold the book they started with, so in-flight calls finish on their version. A failed
reload leaves the old book serving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from liandong.document.load import DOCUMENT_SUFFIX, hidden_paths
from liandong.document.source import SourceError, read_file
from liandong.engine.runtime import DurableRuntime
from liandong.errors import LiandongError, RuleDocumentInvalid
from liandong.fixtures import run_all
from liandong.rulebook import RuleBook
from liandong.server.answers import AnswerCodec, codecs
from liandong.server.metrics import Metrics

log = structlog.get_logger("liandong.reload")

MAX_REPORTED_ERRORS = 200


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


Fingerprint = str


def fingerprint(root: Path) -> Fingerprint:
    """A digest of what the rules directory holds: every *.yaml file's path and bytes (read as a
    document is, so never more than its limit and never from a FIFO; such a file counts by its
    metadata). By content, not modification times: two writes within one clock tick can leave the
    same size and times, and a reload skipped then would serve stale rules."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(DOCUMENT_SUFFIX):
                continue
            path = Path(dirpath) / name
            digest.update(str(path).encode("utf-8", "surrogateescape") + b"\0")
            try:
                digest.update(read_file(path, str(path)))
            except SourceError as exc:  # not a regular file, or over the limit
                digest.update(str(exc).encode("utf-8", "surrogateescape"))
            except OSError as exc:
                digest.update(f"unreadable {exc.errno}".encode())
            digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    trigger: str
    started_at: dt.datetime
    finished_at: dt.datetime
    errors: tuple[str, ...] = ()
    fixtures_passed: int = 0
    fixtures_failed: int = 0


@dataclass(frozen=True)
class Serving:
    """A rule book and the answer codecs of its versions, swapped in together."""

    book: RuleBook
    codecs: Mapping[str, AnswerCodec]  # by CompiledRuleSet.name


class RulesState:
    def __init__(self, rules_dir: Path, runtime: DurableRuntime, metrics: Metrics, run_fixtures: bool = True, clock: Callable[[], dt.datetime] = _now) -> None:
        self.rules_dir = rules_dir
        self.runtime = runtime
        self.metrics = metrics
        self.run_fixtures = run_fixtures
        self._clock = clock
        self._serving: Serving | None = None
        self._lock = threading.Lock()  # one reload at a time
        self.last: ReloadOutcome | None = None
        self.last_success_at: dt.datetime | None = None
        self._serving_fingerprint: Fingerprint | None = None  # the directory as it was when the serving book was read

    @property
    def serving(self) -> Serving | None:
        """The book serving now with its codecs (a plain read: swaps are single reference assignments)."""
        return self._serving

    @property
    def book(self) -> RuleBook | None:
        serving = self._serving
        return serving.book if serving is not None else None

    def reload(self, trigger: str) -> ReloadOutcome:
        """Load, check and swap in the rules directory (one reload at a time)."""
        with self._lock:
            return self._reload(trigger, fingerprint(self.rules_dir))  # taken first: an edit during the load is a change next time

    def reload_if_changed(self, trigger: str) -> ReloadOutcome | None:
        """As reload(), or None (logged and counted as `unchanged`) when the directory is as it
        was when the serving rules were read."""
        with self._lock:
            seen = fingerprint(self.rules_dir)
            if self._serving is not None and seen == self._serving_fingerprint:
                self.metrics.reloads.labels(outcome="unchanged", trigger=trigger).inc()
                log.info("rules_reload_skipped", trigger=trigger, reason="the rules directory is unchanged since the serving rules were read")
                return None
            return self._reload(trigger, seen)

    def _reload(self, trigger: str, seen: Fingerprint) -> ReloadOutcome:
        started = self._clock()
        errors: list[str] = []
        passed = failed = 0
        new: RuleBook | None = None
        built: Mapping[str, AnswerCodec] = {}
        try:
            new = RuleBook.load(self.rules_dir, self.runtime, clock=self._clock)
            built = codecs(c for name in new.rulesets() for c in new.versions(name))
            if self.run_fixtures:
                run = run_all(new, self.rules_dir)
                passed, failed = run.passed, run.failed
                errors.extend(str(p) for p in run.problems)
                for r in run.results:
                    if not r.passed:
                        errors.append(f"{r.path}:{r.line}: fixture '{r.note}' failed: {'; '.join(r.failures)}")
        except RuleDocumentInvalid as exc:
            errors.extend(str(p) for p in exc.problems)
        except LiandongError as exc:
            errors.append(exc.message)
        except OSError as exc:
            errors.append(f"{self.rules_dir}: {exc.strerror or exc}")
        except Exception as exc:  # a bug in loading must not end the reload without an outcome
            log.exception("rules_reload_crashed", trigger=trigger)
            errors.append(f"{self.rules_dir}: unexpected {type(exc).__name__} while loading: {exc}")
        ok = new is not None and not errors
        if ok and new is not None:
            self._serving = Serving(new, built)
            self._serving_fingerprint = seen
            self.last_success_at = self._clock()
        outcome = ReloadOutcome(ok, trigger, started, self._clock(), tuple(errors[:MAX_REPORTED_ERRORS]), passed, failed)
        self.last = outcome
        self.metrics.reloads.labels(outcome="success" if ok else "failure", trigger=trigger).inc()
        hidden = hidden_paths(self.rules_dir)
        if hidden:  # a rule set that silently does not load is a wrong answer waiting to happen
            log.warning("rules_not_loaded", trigger=trigger, paths=hidden[:MAX_REPORTED_ERRORS], count=len(hidden), reason="names starting with '.' are not loaded")
        if ok:
            self.metrics.last_reload_success.set(outcome.finished_at.timestamp())
            log.info("rules_reloaded", trigger=trigger, rulesets=list(new.rulesets()) if new else [], fixtures_passed=passed, duration_ms=round((outcome.finished_at - started).total_seconds() * 1000, 1))
        else:
            log.error("rules_reload_failed", trigger=trigger, errors=list(outcome.errors[:20]), error_count=len(errors), kept_serving=self._serving is not None)
        return outcome

    def active_versions(self) -> list[tuple[str, str, str]]:
        """(rule set, version, content hash) in force now, for each rule set serving."""
        book = self.book
        if book is None:
            return []
        out = []
        for name in book.rulesets():
            try:
                active = book.active(name)
            except LiandongError:
                continue  # no version in force today
            out.append((name, active.document.version, active.document.content_hash))
        return out
