"""When an obligation falls due, from the moments its clock can start.

This is the one place that turns an obligation's timing, as the plan words it, into an absolute
due time. The incident service's clocks (rows in the store, claimed when due) call it and know no
timing kind themselves, so a new kind of deadline (working days, a time of day, a recurring report)
is one more case here, not one more mechanism there.

`starts` maps a start event to the moment it happened for this incident. `incident_reported` is
the report that first required the obligation; the other events are reported by callers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from liandong.document.model import Timing
from liandong.engine.result import ObligationResult

INCIDENT_REPORTED = "incident_reported"
# The events an obligation's clock may start at (rules/README.md, "Obligations").
START_EVENTS = (INCIDENT_REPORTED, "request_received", "order_issued", "instruction_received", "complaint_received")


def start_event(obligation: ObligationResult) -> str:
    """The event whose moment starts this obligation's clock."""
    return INCIDENT_REPORTED


def first_due(obligation: ObligationResult, starts: Mapping[str, dt.datetime]) -> dt.datetime | None:
    """The obligation's first absolute due time; None when it has no fixed time (promptly, or no
    time stated) or its clock has not started (its start event has not happened yet)."""
    start = starts.get(start_event(obligation))
    if start is None:
        return None
    if obligation.timing is Timing.AT_ONCE:
        return start
    if obligation.timing is Timing.WITHIN and obligation.within_seconds is not None:
        return start + dt.timedelta(seconds=obligation.within_seconds)
    return None


def next_due(obligation: ObligationResult, previous: dt.datetime) -> dt.datetime | None:
    """For a recurring obligation (follow-up reports until the incident closes), the due time after
    `previous`; None for an obligation that falls due once."""
    return None
