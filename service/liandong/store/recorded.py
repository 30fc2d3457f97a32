"""The incident store as a source of recorded incidents for shadow replay (`liandong replay --store`)."""

from __future__ import annotations

from collections.abc import Iterator

from liandong.engine.result import Incident
from liandong.shadow import Recorded
from liandong.store.base import IncidentStore, Query

PAGE = 500


class StoreIncidents:
    """A shadow.IncidentSource over the store: every recorded incident (open and closed, in id order)
    with its merged facts, opened at its first report, and the rule set and version it was judged under."""

    def __init__(self, store: IncidentStore, status: str = "", incident_type: str = "") -> None:
        self.store = store
        self.status = status
        self.incident_type = incident_type

    def __call__(self) -> Iterator[Recorded]:
        after = ""
        while True:
            page = self.store.find(Query(status=self.status, type=self.incident_type, page_size=PAGE, after_id=after))
            for r in page.records:
                incident = Incident(type=r.type, facts=dict(r.facts), id=r.id, occurred_at=r.opened_at)
                yield Recorded(incident, r.ruleset, r.version)
            if not page.next_token:
                return
            after = page.next_token
