"""The "compare versions" page: the semantic diff (document/diff.py, as `liandong rules diff` gives it)
between two loaded versions of a rule set, as a table.

The documents are those of the rule book now serving; an unknown rule set or version is the
NOT_FOUND GetRuleSet gives, through the same status table.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import grpc
import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from liandong.document.diff import Change, NotComparable, diff
from liandong.document.model import RuleSetDocument
from liandong.errors import RuleSetNotFound
from liandong.server import bounds, status
from liandong.server.calls import refusal
from liandong.server.web.calls import Aborted, Calls

FIELD_TEXT = {
    "level": "级别 level",
    "lead": "牵头单位 lead",
    "command_tier": "指挥层级 command tier",
    "units": "参与单位 units",
    "groups": "工作组 groups",
    "obligations": "义务 obligations",
}


@dataclass(frozen=True)
class Row:
    """One field of one change as the table shows it: for a set, what is lost (old) and what is gained (new)."""

    field: str
    old: str
    new: str


def rows(change: Change) -> list[Row]:
    out = []
    for field, old, new in change.fields:
        if old.startswith("-[") and new.startswith("+["):  # a set: what it loses, what it gains
            lost, gained = old[2:-1], new[2:-1]
            out.append(
                Row(FIELD_TEXT.get(field, field), f"去掉 {lost}" if lost else "—", f"增加 {gained}" if gained else "—")
            )
        else:
            out.append(Row(FIELD_TEXT.get(field, field), old, new))
    return out


def try_query(version: str, example: dict[str, object]) -> str:
    """The "try a plan" query that answers the example incident under one version."""
    fields = {f"f.{k}": (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in example.items()}
    return urllib.parse.urlencode({"version": version, "run": "1", **fields})


def documents(calls: Calls, ruleset: str, old: str, new: str) -> tuple[list[str], RuleSetDocument, RuleSetDocument]:
    """The loaded versions of the rule set and the two documents; Aborted (NOT_FOUND...) as GetRuleSet would be."""
    try:
        bounds.check_text("ruleset", ruleset)
        bounds.check_text("version", old)
        bounds.check_text("version", new)
        serving = calls.servicer.state.serving
        if serving is None:
            raise status.Refusal(status.plain(grpc.StatusCode.UNAVAILABLE, "rules are not loaded yet"))
        loaded = {c.document.version: c.document for c in serving.book.versions(ruleset)}
        known = list(loaded)  # oldest first
        # Without a choice: the newest version against the one before it.
        old = old or known[max(0, len(known) - 2)]
        new = new or known[-1]
        for version in (old, new):
            if version not in loaded:
                raise RuleSetNotFound(
                    f"rule set '{ruleset}' has no version '{version}' (loaded: {', '.join(loaded)})", ruleset=ruleset
                )
    except Exception as exc:
        raise Aborted(refusal(exc, "CompareVersions")) from exc
    return known, loaded[old], loaded[new]


def routes(calls: Calls, env: jinja2.Environment) -> list[Route]:
    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    async def compare(request: Request) -> Response:
        name = request.path_params["ruleset"]
        query = request.query_params
        try:
            known, old, new = await run_in_threadpool(
                documents, calls, name, query.get("from", ""), query.get("to", "")
            )
        except Aborted as exc:
            return page("refused.html", status_code=exc.http_status(), error=exc, code=exc.status.code.name)
        changes: list[Change] = []
        incomparable = ""
        try:
            changes = await run_in_threadpool(diff, old, new)
        except NotComparable as exc:
            incomparable = str(exc)
        return page(
            "compare.html",
            status_code=422 if incomparable else 200,
            ruleset=name,
            title=new.title,
            versions=known,
            old=old,
            new=new,
            changes=[(change, rows(change), try_query(new.version, change.example)) for change in changes],
            incomparable=incomparable,
        )

    return [Route("/rulesets/{ruleset}/diff", compare, methods=["GET"])]
