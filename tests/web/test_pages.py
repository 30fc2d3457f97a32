"""The pages for people, read over plain HTTP: every rule set version listed, the form generated from the inputs, answers and refusals shown."""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterator

import pytest

from liandong.document.load import document_paths
from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from liandong.server.web.pages import within
from support.data import BUNDLED
from support.servers import LOOPBACK, running
from support.web import base_url, call


@pytest.fixture(scope="module")
def web(runtime: DurableRuntime) -> Iterator[Service]:
    with running(BUNDLED, runtime, http=f"{LOOPBACK}:0") as svc:
        yield svc


def _page(svc: Service, path: str, **query: str) -> tuple[int, str]:
    url = base_url(svc) + path + ("?" + urllib.parse.urlencode(query) if query else "")
    reply = call(url)
    assert reply.content_type.startswith("text/html")
    return reply.status, html.unescape(reply.text)


def _field(page: str, name: str) -> str:
    """The HTML of one input's field block."""
    match = re.search(rf'<div class="field[^"]*" id="field-{name}">(.*?)\n  </div>', page, re.S)
    assert match, name
    return match.group(1)


def test_rule_sets_page_lists_every_version_with_hash_dates_and_plan(web: Service) -> None:
    """/rulesets shows every rule set and version with its effective date, content hash, plan and source, and which is in force."""
    status, page = _page(web, "/rulesets")
    listed = call(base_url(web) + "/v1/rulesets").json()["rulesets"]
    bundled = {path.parent.name for path in document_paths(BUNDLED)[0]}
    assert status == 200 and {s["id"] for s in listed} == bundled  # type: ignore[attr-defined]
    for summary in listed:  # type: ignore[attr-defined]
        assert f'id="ruleset-{summary["id"]}"' in page
        for v in summary["versions"]:
            for shown in (v["version"], v["effectiveFrom"], v["contentHash"], v["sourcePlan"], v["sourceLocation"]):
                assert shown in page, (summary["id"], shown)
    assert page.count("现行</span>") == len(bundled)


def test_the_form_shows_units_bounds_defaults_enums_and_required(web: Service) -> None:
    """The form is generated from the inputs: unit and bounds of a number, the plan's wording of an enum, the default as a default, required marked."""
    _, fire = _page(web, "/rulesets/fire-linkage")
    deaths = _field(fire, "deaths")
    assert "火灾造成的死亡人数（人）" in deaths and 'min="0"' in deaths and "范围 0 至 +∞ 人" in deaths
    assert "默认值 <strong>0</strong>" in deaths and 'value=""' in deaths and "必填" not in deaths
    _, flood = _page(web, "/rulesets/flood-control")
    magnitude = _field(flood, "flood_magnitude")
    assert "较大洪水 (considerable)" in magnitude and "（默认：无 (none)）" in magnitude
    _, township = _page(web, "/rulesets/township-mass-incident")
    assert "必填 required" in _field(township, "participants")
    assert "是 (true)" in _field(township, "local_forces_can_control")


def test_submitting_shows_the_determination_as_a_duty_officer_reads_it(web: Service) -> None:
    """3 deaths: 较大火灾 with its commanders, lead, five groups, units with duties, obligations with timing, clauses and assumed inputs."""
    status, page = _page(web, "/rulesets/fire-linkage", run="1", **{"f.deaths": "3"})
    answer = call(base_url(web) + "/v1/determine", b'{"incident": {"type": "fire", "facts": {"deaths": 3}}}').json()
    assert status == 200 and '<span class="level" id="level">较大火灾</span>' in page
    assert page.count('<div class="card group">') == len(answer["groups"]) == 5  # type: ignore[arg-type]
    for group in answer["groups"]:  # type: ignore[attr-defined]
        assert group["name"] in page and group["id"] in page
    for unit in answer["participatingUnits"]:  # type: ignore[attr-defined]
        assert unit["name"] in page and unit["duties"] in page
    for commander in answer["commanders"]:  # type: ignore[attr-defined]
        assert f"{commander['role']}：{commander['who']}" in page
    assert answer["leadAgency"]["name"] in page  # type: ignore[index]
    assert page.count('<div class="card obligation">') == len(answer["obligations"])  # type: ignore[arg-type]
    for rule in answer["matchedRules"]:  # type: ignore[attr-defined]
        assert rule["id"] in page and all(c["clause"] in page for c in rule["citations"])
    assumed = re.search(r'<ul class="plain" id="assumed">(.*?)</ul>', page, re.S)
    assert assumed and all(f"<code>{a['input']}</code>" in assumed.group(1) for a in answer["assumed"])  # type: ignore[attr-defined]
    assert "<code>deaths</code>" not in assumed.group(1)


def test_explain_shows_each_condition_with_its_values(web: Service) -> None:
    """With Explain ticked the page shows every rule's conditions, holding or not, with the values they saw."""
    _, page = _page(web, "/rulesets/fire-linkage", run="1", explain="1", **{"f.deaths": "3"})
    assert 'id="unmatched"' in page and "参与研判的事实" in page
    assert '<span class="holds">✓</span>' in page and '<span class="fails">✗</span>' in page
    assert "[实际 deaths = 3]" in page and "[实际 serious_injuries = 0]" in page


def test_bad_input_shows_the_invalid_argument_violations_next_to_the_fields(web: Service) -> None:
    """A bad value gets HTTP 400 and the very BadRequest violations of INVALID_ARGUMENT, each by its field, the typed values kept."""
    status, page = _page(web, "/rulesets/fire-linkage", run="1", **{"f.deaths": "-1", "f.serious_injuries": "many"})
    body = b'{"incident": {"type": "fire", "facts": {"deaths": -1, "serious_injuries": "many"}}}'
    [details] = call(base_url(web) + "/v1/determine", body).json()["details"]  # type: ignore[misc]
    assert status == 400 and "INVALID_ARGUMENT" in page
    for violation in details["fieldViolations"]:
        name = violation["field"].removeprefix("incident.facts.")
        block = _field(page, name)
        assert f'<div class="field invalid" id="field-{name}">' in page
        assert f"{violation['description']} ({violation['reason']})" in block
    assert 'value="-1"' in _field(page, "deaths") and 'value="many"' in _field(page, "serious_injuries")


def test_an_empty_form_is_refused_like_an_empty_report(web: Service) -> None:
    """Submitting nothing is the empty report gRPC refuses: the violation on incident.facts is shown above the form."""
    status, page = _page(web, "/rulesets/fire-linkage", run="1")
    assert status == 400 and 'id="request-violations"' in page and "incident.facts" in page


def test_an_unknown_rule_set_or_version_is_a_not_found_page(web: Service) -> None:
    """An unknown rule set or version is the NOT_FOUND of GetRuleSet, as a page with HTTP 404."""
    assert _page(web, "/rulesets/no-such-plan")[0] == 404
    status, page = _page(web, "/rulesets/fire-linkage", version="1999.9")
    assert status == 404 and "NOT_FOUND" in page and "1999.9" in page


def test_the_root_leads_to_the_rule_sets(web: Service) -> None:
    """Opening the port's root shows the rule sets page (a redirect to /rulesets)."""
    status, page = _page(web, "/")
    assert status == 200 and "<h1>规则集" in page


def test_durations_read_as_a_duty_officer_says_them() -> None:
    """An obligation's limit is shown in days, hours and minutes, and zero as 立即."""
    assert within(7200) == "2 小时" and within(93600) == "1 天 2 小时" and within(0) == "立即"
