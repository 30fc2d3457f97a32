"""The rule book serving now, and how a new one replaces it.

A reload loads and checks every document, compiles it, and runs every fixture against the new book
before swapping it in with one reference assignment, together with the answer codecs built for
it. Requests hold the book they started with, so in-flight calls finish on their version. A failed
reload leaves the old book serving. What triggers a reload: start-up, SIGHUP (app.py), the admin
service (admin.py), and, with --watch, the file watcher below.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from liandong import shadow
from liandong.document.analysis import analyse, unaccepted
from liandong.document.load import DOCUMENT_SUFFIX, hidden_paths
from liandong.document.source import SourceError, read_file
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import LiandongError, RuleDocumentInvalid
from liandong.fixtures import run_all
from liandong.rulebook import RuleBook
from liandong.server.answers import AnswerCodec, codecs
from liandong.server.metrics import Metrics

log = structlog.get_logger("liandong.reload")

MAX_REPORTED_ERRORS = 200


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
    def __init__(
        self,
        rules_dir: Path,
        runtime: DurableRuntime,
        metrics: Metrics,
        run_fixtures: bool = True,
        clock: Callable[[], dt.datetime] = _now,
        shadow: Path | None = None,
    ) -> None:
        self.rules_dir = rules_dir
        self.runtime = runtime
        self.metrics = metrics
        self.run_fixtures = run_fixtures
        self.shadow = shadow  # recorded incidents to replay on each reload (`--shadow`)
        self._clock = clock
        self._serving: Serving | None = None
        self._lock = threading.Lock()  # one reload at a time
        self.last: ReloadOutcome | None = None
        self.last_success_at: dt.datetime | None = None
        self._serving_fingerprint: Fingerprint | None = None  # the directory as it was when the serving book was read
        # The directory as last seen (by a reload or a scrape) and when it was first seen so: metrics only.
        self._seen_lock = threading.Lock()
        self._seen_fingerprint: Fingerprint | None = None
        self._seen_changed_at = clock().timestamp()

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
            return self._reload(
                trigger, fingerprint(self.rules_dir)
            )  # taken first: an edit during the load is a change next time

    def reload_if_changed(self, trigger: str) -> ReloadOutcome | None:
        """As reload(), or None (logged and counted as `unchanged`) when the directory is as it
        was when the serving rules were read."""
        with self._lock:
            seen = fingerprint(self.rules_dir)
            if self._serving is not None and seen == self._serving_fingerprint:
                self.metrics.reloads.labels(outcome="unchanged", trigger=trigger).inc()
                log.info(
                    "rules_reload_skipped",
                    trigger=trigger,
                    reason="the rules directory is unchanged since the serving rules were read",
                )
                return None
            return self._reload(trigger, seen)

    def _note_seen(self, seen: Fingerprint) -> float:
        """Remember the directory's content; the Unix time it was first seen holding it."""
        with self._seen_lock:
            if seen != self._seen_fingerprint:
                self._seen_fingerprint, self._seen_changed_at = seen, self._clock().timestamp()
            return self._seen_changed_at

    def directory_status(self) -> tuple[bool, float]:
        """For the metrics, at scrape time: whether the directory's content differs from the rules
        serving (none serving counts as differing), and since when it holds that content. By content,
        as reloads decide, so an edit that keeps sizes and times is still seen."""
        seen = fingerprint(self.rules_dir)
        changed_at = self._note_seen(seen)
        return seen != self._serving_fingerprint, changed_at

    def _reload(self, trigger: str, seen: Fingerprint) -> ReloadOutcome:
        self._note_seen(seen)
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
            self._report_findings(new, trigger)
            if self.shadow is not None and self._serving is not None:
                self._shadow(self._serving.book, new, self.shadow, trigger)
            self._serving = Serving(new, built)
            self._serving_fingerprint = seen
            self.last_success_at = self._clock()
        outcome = ReloadOutcome(
            ok, trigger, started, self._clock(), tuple(errors[:MAX_REPORTED_ERRORS]), passed, failed
        )
        self.last = outcome
        self.metrics.reloads.labels(outcome="success" if ok else "failure", trigger=trigger).inc()
        hidden = hidden_paths(self.rules_dir)
        if hidden:  # a rule set that silently does not load is a wrong answer waiting to happen
            log.warning(
                "rules_not_loaded",
                trigger=trigger,
                paths=hidden[:MAX_REPORTED_ERRORS],
                count=len(hidden),
                reason="names starting with '.' are not loaded",
            )
        if ok:
            self.metrics.last_reload_success.set(outcome.finished_at.timestamp())
            log.info(
                "rules_reloaded",
                trigger=trigger,
                rulesets=list(new.rulesets()) if new else [],
                fixtures_passed=passed,
                duration_ms=round((outcome.finished_at - started).total_seconds() * 1000, 1),
            )
        else:
            log.error(
                "rules_reload_failed",
                trigger=trigger,
                errors=list(outcome.errors[:20]),
                error_count=len(errors),
                kept_serving=self._serving is not None,
            )
        return outcome

    def _report_findings(self, book: RuleBook, trigger: str) -> None:
        """The analysis of every loaded version, as located warnings and a gauge (they do not stop a
        reload: `liandong rules validate` is where they fail)."""
        for name in book.rulesets():
            for compiled in book.versions(name):
                doc = compiled.document
                found = unaccepted(analyse(doc))
                self.metrics.rule_findings.labels(ruleset=doc.ruleset, version=doc.version).set(len(found))
                if found:
                    log.warning(
                        "rules_findings",
                        trigger=trigger,
                        ruleset=doc.ruleset,
                        version=doc.version,
                        findings=[str(f) for f in found[:MAX_REPORTED_ERRORS]],
                        count=len(found),
                    )

    def _shadow(self, serving: RuleBook, candidate: RuleBook, path: Path, trigger: str) -> None:
        """Replay the recorded incidents: answered by the serving book now, and by the newest version
        of each rule set in the new one; counts in the log and metrics, never a reason to refuse."""
        try:
            with path.open(encoding="utf-8") as stream:
                incidents = list(shadow.read_jsonl(stream))
        except (OSError, shadow.BadLine) as exc:
            log.error("rules_shadow_failed", trigger=trigger, path=str(path), error=str(exc))
            return
        by_ruleset: dict[str, list[Incident]] = {}
        for incident in incidents:
            claimants = candidate.incident_types().get(incident.type, ())
            if claimants:
                by_ruleset.setdefault(claimants[0], []).append(incident)
        for name, mine in sorted(by_ruleset.items()):
            newest = candidate.versions(name)[-1].document.version
            result = shadow.replay(serving, mine, newest, ruleset=name, candidate=candidate)
            self.metrics.shadow_compared.labels(ruleset=name).set(result.compared)
            self.metrics.shadow_changed.labels(ruleset=name).set(result.changed)
            log.info(
                "rules_shadow_replay",
                trigger=trigger,
                ruleset=name,
                version=newest,
                compared=result.compared,
                changed=result.changed,
                differences=[d.to_json() for d in result.differences[:20]],
            )

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


FileStamps = tuple[tuple[str, int, int], ...]


def file_stamps(root: Path) -> FileStamps:
    """(path, mtime, size) of every file under root, sorted: the watcher's cheap poll, which only
    decides whether to reload; whether a reload is needed is then `fingerprint`'s (by content)."""
    entries = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            entries.append((path, st.st_mtime_ns, st.st_size))
    return tuple(sorted(entries))


class Watcher:
    """With `--watch`: reloads the rules when a file under their directory changes (trigger "watch").

    It polls (mtime and size every interval), which works on every filesystem, including mounted
    ConfigMaps, where change notifications do not arrive.
    """

    def __init__(self, state: RulesState, interval: float, stopping: threading.Event) -> None:
        self.state = state
        self.interval = interval
        self._stopping = stopping
        # Made before the first load: an edit landing while that load runs must count as a change.
        self._seen = file_stamps(state.rules_dir)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="rules-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval):
            now = file_stamps(self.state.rules_dir)
            if now != self._seen:
                self._seen = now
                self.state.reload("watch")


class SignalReloads:
    """Reloads asked for by SIGHUP, coalesced: one thread runs them one after another, requests
    made while one runs leave at most one more pending, and a rules directory unchanged since the
    serving rules were read is not reloaded (`rules_reload_skipped`, outcome `unchanged`).
    Requests made before start() (a SIGHUP during the first load) are served once it is called."""

    def __init__(self, state: RulesState) -> None:
        self.state = state
        # Requests are bytes in a pipe: writing one takes no lock, so a signal handler may do it
        # even when it interrupts another handler (an Event.set there can deadlock the main thread).
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Ask for a reload: one write(2), no lock, never blocks; safe in a signal handler."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full of requests: a reload is pending anyway
            os.write(self._write, b"r")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Run no more reloads; wait up to `timeout` seconds for one running to end."""
        self._closed = True
        self.request()  # wakes the thread
        if self._thread is not None and timeout is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                os.read(self._read, 65536)  # waits for a request, then takes every one made so far
                if self._closed:
                    return
                self.state.reload_if_changed("signal")
        finally:
            os.close(self._read)
            os.close(self._write)
