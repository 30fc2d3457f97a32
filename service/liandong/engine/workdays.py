"""Mainland China's official calendar of working days, from the maintained `chinese-calendar` package.

The State Council publishes each year's 放假安排 late in the year before, including the 调休 working
weekends, and the package follows it. A day in a year it does not cover is never guessed: asking
about one raises DeadlineUnknown, so a working-day deadline past the calendar shows as unknown, not
as a date that may be wrong.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar  # type: ignore[import-untyped]

from liandong.errors import DeadlineUnknown


def known_years() -> tuple[int, int]:
    """The first and last year the installed calendar covers."""
    years = [day.year for day in chinese_calendar.holidays]
    return min(years), max(years)


def is_working_day(day: dt.date) -> bool:
    """Whether `day` is an official working day (a 调休 Saturday is; a holiday Monday is not)."""
    first, last = known_years()
    if not first <= day.year <= last:
        raise DeadlineUnknown(
            f"the official working-day calendar (chinese-calendar {chinese_calendar.__version__}) covers "
            f"{first}-{last}; {day.isoformat()} is outside it, so the due time is not computed",
            year=day.year,
            known_until=last,
        )
    return bool(chinese_calendar.is_workday(day))


def add_working_days(day: dt.date, count: int) -> dt.date:
    """The `count`th working day after `day` (`day` itself is not counted)."""
    current = day
    remaining = count
    while remaining > 0:
        current += dt.timedelta(days=1)
        if is_working_day(current):
            remaining -= 1
    return current


def next_working_day_from(day: dt.date) -> dt.date:
    """`day` if it is a working day, else the first working day after it."""
    current = day
    while not is_working_day(current):
        current += dt.timedelta(days=1)
    return current
