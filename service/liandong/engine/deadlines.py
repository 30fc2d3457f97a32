"""When an obligation falls due, from the moments its clock can start.

This is the one place that turns an obligation's timing, as the plan words it, into an absolute
due time. The incident service's clocks (rows in the store, claimed when due) call it and know no
timing kind themselves, so a new kind of deadline is one more case here, not one more mechanism there.

`starts` maps a start event to the moment it happened for this incident (timezone-aware). The
default event, `incident_reported`, is the report that first required the obligation; the other
events are reported by callers. The kinds (rules/README.md, "Obligation timing"):

- at once: the start itself; a fixed duration (20m, 1h): start + duration;
- calendar days (5日内): 24:00 of the Nth day after the start's day, moved to the next working day
  when that day is a 法定休假日 (民法典 第二百零一条: the start day is not counted; 第二百零三条:
  a last day that is a 法定休假日 gives way to the day after it; the last day ends at 24:00);
- working days (10个工作日内): 24:00 of the Nth official working day after the start's day;
- the same day (当天): 24:00 of the start's day, or with `latest` (最迟不得超过24小时) start + latest,
  the same day being the aim (`aimed_due`);
- a time of day (8:00点前): the first such time after the start; daily, every day after that.

Wall-clock kinds read Beijing time (UTC+8, no daylight saving since 1991) and answer in it. A due
time needing a year the official calendar does not cover raises DeadlineUnknown: never a guess.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from liandong.document.model import INCIDENT_REPORTED, START_EVENTS, DeadlineKind, Repeat, Timing
from liandong.engine import workdays
from liandong.engine.result import ObligationResult

__all__ = [
    "BEIJING",
    "INCIDENT_REPORTED",
    "START_EVENTS",
    "aimed_due",
    "first_due",
    "in_time",
    "next_due",
    "start_event",
]

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
_DAY = dt.timedelta(days=1)


def start_event(obligation: ObligationResult) -> str:
    """The event whose moment starts this obligation's clock."""
    return obligation.deadline.start


def _local(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a clock start must be timezone-aware, not {moment.isoformat()}")
    return moment.astimezone(BEIJING)


def _end_of(day: dt.date) -> dt.datetime:
    """24:00 of `day` in Beijing, i.e. 00:00 of the next day."""
    return dt.datetime.combine(day + _DAY, dt.time(0, 0), BEIJING)


def _next_time_of_day(after: dt.datetime, time_of_day: str) -> dt.datetime:
    hours, minutes = (int(part) for part in time_of_day.split(":"))
    local = _local(after)
    candidate = dt.datetime.combine(local.date(), dt.time(hours, minutes), BEIJING)
    return candidate if candidate > local else candidate + _DAY


def first_due(obligation: ObligationResult, starts: Mapping[str, dt.datetime]) -> dt.datetime | None:
    """The obligation's first absolute due time; None when it has no fixed time (promptly, or no
    time stated, or 续报 with no interval) or its clock has not started (its start event has not
    happened yet). Raises DeadlineUnknown past the official calendar's last known year."""
    d = obligation.deadline
    start = starts.get(d.start)
    if start is None:
        return None
    kind = d.kind
    if kind is DeadlineKind.AT_ONCE or (kind is DeadlineKind.NONE and obligation.timing is Timing.AT_ONCE):
        return start
    if kind is DeadlineKind.ELAPSED:
        return start + dt.timedelta(seconds=d.seconds)
    if kind is DeadlineKind.NONE and obligation.timing is Timing.WITHIN and obligation.within_seconds:
        # A result built with the fixed-limit fields only (before the structured deadline existed).
        return start + dt.timedelta(seconds=obligation.within_seconds)
    if kind is DeadlineKind.CALENDAR_DAYS:
        return _end_of(workdays.next_working_day_from(_local(start).date() + dt.timedelta(days=d.days)))
    if kind is DeadlineKind.WORKING_DAYS:
        return _end_of(workdays.add_working_days(_local(start).date(), d.days))
    if kind is DeadlineKind.SAME_DAY:
        if d.latest_seconds is not None:
            return start + dt.timedelta(seconds=d.latest_seconds)
        return _end_of(_local(start).date())
    if kind is DeadlineKind.TIME_OF_DAY:
        return _next_time_of_day(start, d.time_of_day)
    if d.repeat is Repeat.INTERVAL:
        # A recurring report with no time for the first one: the first falls due one interval in.
        return start + dt.timedelta(seconds=d.every_seconds)
    return None


def aimed_due(obligation: ObligationResult, starts: Mapping[str, dt.datetime]) -> dt.datetime | None:
    """What the plan strives for when it is earlier than the deadline (力争……当天: 24:00 of the
    start's day); None when the obligation has no such aim or its clock has not started. Missing the
    aim is no breach: `first_due` is the deadline."""
    d = obligation.deadline
    start = starts.get(d.start)
    if start is None or d.kind is not DeadlineKind.SAME_DAY or d.latest_seconds is None:
        return None
    return _end_of(_local(start).date())


def next_due(obligation: ObligationResult, previous: dt.datetime) -> dt.datetime | None:
    """For a recurring obligation (follow-up reports until the incident closes), the due time after
    `previous`; None for an obligation that falls due once, and for 续报 with no interval."""
    d = obligation.deadline
    if d.repeat is Repeat.INTERVAL:
        return previous + dt.timedelta(seconds=d.every_seconds)
    if d.repeat is Repeat.DAILY and d.time_of_day:
        return _next_time_of_day(previous, d.time_of_day)
    return None


def in_time(obligation: ObligationResult, due: dt.datetime, at: dt.datetime) -> bool:
    """Whether an act at `at` meets a due time `due` of this obligation. Before it always does; at
    the instant itself as the document's boundary words read (rules/README.md, "Boundary words on
    time"): 以内 and 不得超过 include the end, as does a day's 24:00; 「8:00点前」 includes 08:00 under
    `civil-code` and excludes it under `accident-grading`."""
    if at < due:
        return True
    return at == due and obligation.deadline.end_included
