"""The pages for people, in Chinese with ids shown: the rule sets, and "try a plan".

Every page is built from the same messages a gRPC caller gets (ListRuleSets, GetRuleSet,
Determine through calls.py), rendered by Jinja templates with autoescaping; no JavaScript.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from google.protobuf import json_format
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from liandong.server.web import forms
from liandong.server.web.calls import Aborted, Calls
from liandong.v1 import liandong_pb2 as pb

TEMPLATES = Path(__file__).parent / "templates"

# The menu: (path, label). Pages added later (incidents, compare versions) append theirs.
NAV: list[tuple[str, str]] = [("/rulesets", "规则集 Rule sets")]

_TIMING = pb.Obligation.Timing


def within(seconds: int) -> str:
    """A limit as a duty officer reads it: 2 小时, 1 天 6 小时, 30 分钟."""
    if seconds <= 0:
        return "立即"
    parts = []
    for size, name in ((86400, "天"), (3600, "小时"), (60, "分钟"), (1, "秒")):
        if seconds >= size:
            parts.append(f"{seconds // size} {name}")
            seconds %= size
    return " ".join(parts)


def timing(o: pb.Obligation) -> str:
    if o.timing == _TIMING.TIMING_WITHIN:
        return f"时限 {within(o.within.seconds)}"
    if o.timing == _TIMING.TIMING_AT_ONCE:
        return "立即"
    if o.timing == _TIMING.TIMING_PROMPTLY:
        return "及时（预案未规定具体时限）"
    return "预案未规定时限"


def cited(citations: Iterable[pb.Citation], one: pb.Citation | None = None) -> str:
    """Every clause cited; an answer with only the first shows that one."""
    shown = list(citations) or ([one] if one is not None and one.clause else [])
    return "；".join(f"{c.document} {c.clause}".strip() for c in shown)


def basis(citations: Iterable[pb.Citation], one: pb.Citation | None = None) -> str:
    """ "依据 <clauses>", or nothing when the plan cites no clause for it."""
    shown = cited(citations, one)
    return f"依据 {shown}" if shown else ""


def value_text(value: Any) -> str:
    """A google.protobuf.Value as text (assumed inputs, evaluated facts)."""
    data = json_format.MessageToDict(value) if hasattr(value, "WhichOneof") else value
    if isinstance(data, bool):
        return "是 (true)" if data else "否 (false)"
    if isinstance(data, float) and data.is_integer():
        return str(int(data))
    return str(data)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(timing=timing, cited=cited, basis=basis, value_text=value_text)
    env.globals["nav"] = NAV
    return env


def _violations_by_field(exc: Aborted) -> tuple[dict[str, list[str]], list[str]]:
    """BadRequest violations on one fact, by input name, and the others (on the whole request)."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    prefix = "incident.facts."
    for field, description, reason in exc.field_violations():
        text = f"{description} ({reason})" if reason else description
        if field.startswith(prefix):
            by_field.setdefault(field[len(prefix) :], []).append(text)
        else:
            general.append(f"{field}: {text}")
    return by_field, general


def routes(calls: Calls, env: jinja2.Environment) -> list[Route]:
    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    def refused(exc: Aborted) -> HTMLResponse:
        return page("refused.html", status_code=exc.http_status(), error=exc, code=exc.status.code.name)

    async def index(request: Request) -> Response:
        return RedirectResponse("/rulesets", status_code=302)

    async def rulesets(request: Request) -> Response:
        try:
            listed = await run_in_threadpool(calls.list_rulesets)
        except Aborted as exc:
            return refused(exc)
        return page("rulesets.html", rulesets=listed.rulesets)

    async def try_plan(request: Request) -> Response:
        query: Mapping[str, str] = request.query_params
        name = request.path_params["ruleset"]
        version = query.get("version", "")
        try:
            ruleset = await run_in_threadpool(calls.get_ruleset, name, version)
        except Aborted as exc:
            return refused(exc)
        incident_type = query.get("type", "") or (ruleset.incident_types[0] if ruleset.incident_types else "")
        explain = query.get("explain", "") == "1"
        answer: pb.Determination | None = None
        error: Aborted | None = None
        by_field: dict[str, list[str]] = {}
        general: list[str] = []
        if "run" in query:
            request_message = pb.DetermineRequest(
                incident=pb.Incident(id=query.get("id", ""), type=incident_type, facts=forms.facts(ruleset, query)),
                ruleset=name,
                version=version,
                explain=explain,
            )
            try:
                answer = await run_in_threadpool(calls.determine, request_message)
            except Aborted as exc:
                error = exc
                by_field, general = _violations_by_field(exc)
        return page(
            "try.html",
            status_code=error.http_status() if error is not None else 200,
            ruleset=ruleset,
            fields=forms.fields(ruleset, query),
            incident_type=incident_type,
            incident_id=query.get("id", ""),
            version=version,
            explain=explain,
            answer=answer,
            error=error,
            error_code=error.status.code.name if error is not None else "",
            by_field=by_field,
            general=general,
        )

    return [
        Route("/", index, methods=["GET"]),
        Route("/rulesets", rulesets, methods=["GET"]),
        Route("/rulesets/{ruleset}", try_plan, methods=["GET"]),
    ]
