"""The incident pages: open incidents (by level and type), and one incident's timeline.

Built from the messages IncidentService answers (ListIncidents, GetIncident through incident_door's
IncidentCalls, with the HTTP caller's identity). The timeline page follows `/v1/incidents:watch`
(server-sent events, the WatchIncidents stream) and, on each event of its incident, fetches its own
`?part=live` fragment again: a few lines of script, the rendering stays on the server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import jinja2
from google.protobuf import json_format
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from liandong.server.web import pages
from liandong.server.web.calls import Aborted
from liandong.server.web.incident_door import IncidentCalls, context_of
from liandong.v1 import incidents_pb2 as ipb

pages.NAV.append(("/incidents", "事件 Incidents"))

BEIJING = dt.timezone(dt.timedelta(hours=8))
_STATE = ipb.TrackedObligation.State
STATE_TEXT = {
    _STATE.STATE_PENDING: "待办",
    _STATE.STATE_MET: "已完成",
    _STATE.STATE_OVERDUE: "已超时",
    _STATE.STATE_PROMPTLY: "及时（无具体时限）",
    _STATE.STATE_DROPPED: "不再需要",
}
EVENT_TEXT = {
    "OPENED": "事件开始",
    "LEVEL_CHANGED": "级别变化",
    "UNITS_ADDED": "单位加入",
    "UNITS_DROPPED": "单位退出",
    "OBLIGATION_DUE": "义务起算",
    "OBLIGATION_MET": "义务完成",
    "OBLIGATION_OVERDUE": "义务超时",
    "CLOSED": "事件关闭",
    "OBLIGATION_DROPPED": "义务取消",
}
WITHIN_TEXT = {"at_once": "立即", "promptly": "及时（预案未规定具体时限）", "none": "预案未规定时限"}
HISTORY_TEXT = {"report": "报告", "override": "指挥级别调整", "acknowledge": "确认完成", "close": "关闭"}


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: a call (report, override, acknowledgement, close) or an event it caused."""

    at: dt.datetime
    order: tuple[int, int]  # incident version, then calls before the events they caused
    kind: str
    label: str
    text: str
    caller: str = ""


def moment(stamp: Any) -> str:
    """A timestamp in Beijing time, as the plans count."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return str(stamp.ToDatetime(tzinfo=dt.UTC).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"))


def beijing(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).strftime("%m-%d %H:%M:%S")


def level_text(level: ipb.LevelRef) -> str:
    return f"{level.name} ({level.code})" if level.code else "无"


def _event_text(e: ipb.IncidentEvent) -> str:
    kind = ipb.IncidentEvent.Kind.Name(e.kind)
    if kind == "LEVEL_CHANGED":
        by = "指挥调整" if e.changed_by == "override" else "规则判定" if e.changed_by else ""
        return f"{level_text(e.from_level)} → {level_text(e.to_level)}" + (f"（{by}）" if by else "")
    if kind in ("UNITS_ADDED", "UNITS_DROPPED"):
        return "、".join(f"{u.name} ({u.id})" for u in e.units)
    if e.HasField("obligation"):
        o = e.obligation
        text = f"{o.text} ({o.id})"
        if kind == "OBLIGATION_DUE" and o.HasField("due_at"):
            text += f"，{moment(o.due_at)} 前"
        return text
    return e.reason


def _history_text(h: ipb.HistoryEntry) -> str:
    detail = json_format.MessageToDict(h.detail)
    if h.kind == "report":
        facts = detail.get("facts") or {}
        shown = facts.items() if isinstance(facts, dict) else ()
        return "，".join(f"{k}={pages.value_text(v)}" for k, v in shown)
    parts = [f"{k}: {v}" for k, v in detail.items() if k != "facts" and v not in ("", None)]
    return "；".join(parts)


def timeline(record: ipb.IncidentRecord) -> list[Entry]:
    """Calls and events in the order they happened, newest last."""
    out = [
        Entry(
            h.at.ToDatetime(tzinfo=dt.UTC),
            (h.incident_version, 0),
            h.kind,
            HISTORY_TEXT.get(h.kind, h.kind),
            _history_text(h),
            h.caller,
        )
        for h in record.history
    ]
    for e in record.events:
        kind = ipb.IncidentEvent.Kind.Name(e.kind)
        out.append(
            Entry(
                e.at.ToDatetime(tzinfo=dt.UTC),
                (e.incident_version, 1),
                kind.lower(),
                EVENT_TEXT.get(kind, kind),
                _event_text(e),
                e.caller,
            )
        )
    return sorted(out, key=lambda entry: (entry.order, entry.at))


def remaining(o: ipb.TrackedObligation, now: dt.datetime) -> str:
    """How long until it is overdue, or how long past, at the service's clock."""
    if not o.HasField("overdue_at") or o.state not in (_STATE.STATE_PENDING, _STATE.STATE_OVERDUE):
        return ""
    left = int((o.overdue_at.ToDatetime(tzinfo=dt.UTC) - now).total_seconds())
    return f"剩余 {pages.within(left)}" if left > 0 else f"已超时 {pages.within(-left)}"


def environment(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(beijing=beijing, moment=moment, level_text=level_text, remaining=remaining)
    env.globals.update(STATE_TEXT=STATE_TEXT, WITHIN_TEXT=WITHIN_TEXT, ipb=ipb)
    return env


def routes(calls: IncidentCalls, env: jinja2.Environment) -> list[Route]:
    environment(env)

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    def refused(exc: Aborted) -> HTMLResponse:
        return page("refused.html", status_code=exc.http_status(), error=exc, code=exc.status.code.name)

    async def incidents(request: Request) -> Response:
        query = request.query_params
        message = ipb.ListIncidentsRequest(
            status=ipb.INCIDENT_STATUS_OPEN,
            type=query.get("type", ""),
            level_at_least=query.get("level", ""),
            page_size=100,
            page_token=query.get("after", ""),
        )
        context = context_of(request)
        try:
            listed = await run_in_threadpool(calls.list_incidents, message, context)
        except Aborted as exc:
            return refused(exc)
        return page(
            "incidents.html",
            incidents=listed.incidents,
            next_token=listed.next_page_token,
            levels=calls.levels(),
            types=calls.types(),
            level=message.level_at_least,
            incident_type=message.type,
        )

    async def incident(request: Request) -> Response:
        incident_id = request.path_params["incident_id"]
        context = context_of(request)
        try:
            record = await run_in_threadpool(calls.get, incident_id, context)
        except Aborted as exc:
            return refused(exc)
        now = calls.servicer.now()
        last = max((e.sequence for e in record.events), default=0)
        name = "incident_live.html" if request.query_params.get("part") == "live" else "incident.html"
        return page(
            name,
            record=record,
            state=record.state,
            entries=timeline(record),
            now=now,
            now_ms=int(now.timestamp() * 1000),
            last_sequence=last,
        )

    return [
        Route("/incidents", incidents, methods=["GET"]),
        Route("/incidents/{incident_id:path}", incident, methods=["GET"]),
    ]
