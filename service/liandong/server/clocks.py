"""The clocks of incident obligations: one loop per process that asks the store which clock rows
are due and claims them one by one (store.fire), never a sleeping thread per deadline. Time comes
from the injected clock (`now`), so tests move it instead of sleeping through a deadline.

The same loop wakes the process's watchers when other replicas have written events.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from liandong.engine.result import ObligationResult
from liandong.errors import LiandongError
from liandong.incidents import life
from liandong.incidents.model import Change, Record
from liandong.server.metrics import Metrics
from liandong.store.base import IncidentStore

log = structlog.get_logger("liandong.incidents")

Now = Callable[[], dt.datetime]


def system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def file_clock(path: str) -> Now:
    """Tests only (--clock-file): the current time is what the file says (ISO 8601), read on each call."""

    def now() -> dt.datetime:
        text = Path(path).read_text(encoding="utf-8").strip()
        moment = dt.datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    return now


class EventBus:
    """Wakes this process's watchers when events may have been written."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)
            return self._generation


class ClockLoop:
    def __init__(
        self,
        store: IncidentStore,
        now: Now,
        metrics: Metrics,
        bus: EventBus,
        current: Callable[[Record, str], ObligationResult | None],
        late_after: float,
        interval: float,
        stopping: threading.Event,
        on_change: Callable[[Change], None],
    ) -> None:
        self.store = store
        self.now = now
        self.metrics = metrics
        self.bus = bus
        self.current = current
        self.late_after = dt.timedelta(seconds=late_after)
        self.interval = interval
        self.stopping = stopping
        self.on_change = on_change
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="incident-clocks", daemon=True)
        self._last_sequence = -1
        self.manual = False  # tests: the loop only wakes watchers; clocks fire when the test calls run_once()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A new clock may be due sooner than the loop expects (a report was written)."""
        self._wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def run_once(self) -> int:
        """Fire every clock due now; the number fired. Also used by in-process tests."""
        fired = 0
        while not self.stopping.is_set():
            now = self.now()
            due = self.store.due(now, limit=500)
            if not due:
                break
            progress = 0
            for d in due:
                change = self.store.fire(
                    d,
                    lambda rec, d=d: life.overdue(  # type: ignore[misc]
                        rec,
                        d.obligation_id,
                        d.fires_at,
                        now=self.now(),
                        late_after=self.late_after,
                        current=self.current(rec, d.obligation_id),
                    ),
                )
                if change is None:
                    continue
                progress += 1
                fired += 1
                for e in change.events:
                    if e.kind == "obligation_overdue":
                        self.metrics.timer_lag.observe(max(0.0, (e.at - d.fires_at).total_seconds()))
                self.on_change(change)
            if progress == 0:
                break  # all claimed by other replicas, or stale: look again on the next pass
        return fired

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if not self.manual:
                    self.run_once()
                last = self.store.last_sequence()
                if last != self._last_sequence:  # another replica may have written events
                    self._last_sequence = last
                    self.bus.notify()
            except LiandongError as exc:
                log.warning("clock_pass_failed", error=exc.message)
            except Exception:
                log.exception("clock_pass_failed")
            self._wake.wait(self.interval)
            self._wake.clear()
