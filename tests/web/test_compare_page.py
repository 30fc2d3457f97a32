"""The "compare versions" page: the semantic diff of two loaded versions of a rule set, as a table."""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from liandong.document.diff import diff
from liandong.document.load import load_document
from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from support.rules import copy_demo, replace_once
from support.servers import LOOPBACK, running
from support.web import base_url, call

MOVED = ("when: {deaths: {以上: 10}}", "when: {deaths: {以上: 12}}")  # grade-II starts at 12 deaths
MOVED_III = ("- deaths: {以上: 3, 以下: 10}", "- deaths: {以上: 3, 以下: 12}")
UNIT_ADDED = (
    "then: {level: IV, lead: brigade, command_tier: 大队}",
    "then: {level: IV, lead: brigade, command_tier: 大队, units: [chem]}",
)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rules directory with demo 2024.1 and a 2025.1 whose grade-II threshold moved and whose grade IV calls chem."""
    root = tmp_path_factory.mktemp("rules")
    demo = copy_demo(root)
    text = (demo / "2024.1.yaml").read_text(encoding="utf-8")
    for old, new in (MOVED, MOVED_III, UNIT_ADDED, ('version: "2024.1"', 'version: "2025.1"')):
        text = replace_once(text, old, new)
    text = replace_once(text, "effective_from: 2024-01-01", "effective_from: 2025-01-01")
    (demo / "2025.1.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def web(two_versions: Path, runtime: DurableRuntime) -> Iterator[Service]:
    with running(two_versions, runtime, http=f"{LOOPBACK}:0") as svc:
        yield svc


def _page(svc: Service, path: str, **query: str) -> tuple[int, str]:
    url = base_url(svc) + path + ("?" + urllib.parse.urlencode(query) if query else "")
    reply = call(url)
    assert reply.content_type.startswith("text/html")
    return reply.status, html.unescape(reply.text)


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr class="change">(.*?)</tr>', page, re.S)


def test_the_rule_sets_page_links_a_rule_set_with_two_versions_to_its_comparison(web: Service) -> None:
    """A rule set with two versions links to the comparison of its last two versions."""
    status, page = _page(web, "/rulesets")
    assert status == 200 and 'href="/rulesets/demo/diff?from=2024.1&to=2025.1">比较版本' in page


def test_the_moved_threshold_and_the_added_unit_are_shown_with_their_regions_and_examples(
    web: Service, two_versions: Path
) -> None:
    """Deaths 10..11 drop from II to III, grade IV gains chem: each row names its regions, old and new answers and an example."""
    status, page = _page(web, "/rulesets/demo/diff", **{"from": "2024.1", "to": "2025.1"})
    demo = two_versions / "demo"
    changes = diff(load_document(demo / "2024.1.yaml"), load_document(demo / "2025.1.yaml"))
    rows = _rows(page)
    assert status == 200 and len(rows) == len(changes) >= 2
    level = next(r for r in rows if "级别 level" in r)
    assert '<div class="old">II</div>' in level and '<div class="new">III</div>' in level
    assert re.search(r"<code>deaths (= 1[01]|in 10\.\.11)", level)
    assert re.search(r"<code>deaths = 1[01]</code>", level.split('class="plain example"')[1])
    unit = next(r for r in rows if "增加 chem" in r)
    assert "参与单位 units" in unit and "deaths = 12" not in unit
    for change in changes:  # every region the diff module names is on the page
        assert all(f"<code>{region}</code>" in page for region in change.regions)
    link = re.search(r'<a href="(/rulesets/demo\?[^"]+)">新版试一试', level)
    assert link and "f.deaths=1" in link.group(1) and "version=2025.1" in link.group(1)
    tried = call(base_url(web) + link.group(1))  # the example, answered under the new version: III
    assert tried.status == 200 and '<span class="level" id="level">较大</span>' in tried.text


def test_the_same_version_twice_shows_no_change(web: Service) -> None:
    """Comparing a version with itself says there is no change and lists no row."""
    status, page = _page(web, "/rulesets/demo/diff", **{"from": "2025.1", "to": "2025.1"})
    assert status == 200 and 'id="no-change"' in page and not _rows(page)


def test_the_pickers_offer_every_version_and_default_to_the_last_two(web: Service) -> None:
    """Without a choice the page compares the newest version with the one before, and both pickers list every version."""
    status, page = _page(web, "/rulesets/demo/diff")
    assert status == 200 and '<h2 id="summary">2024.1 → 2025.1</h2>' in page
    for picker in ("from", "to"):
        select = re.search(rf'<select id="{picker}" name="{picker}">(.*?)</select>', page, re.S)
        assert select and re.findall(r'<option value="([^"]+)"', select.group(1)) == ["2024.1", "2025.1"]


def test_an_unknown_rule_set_or_version_is_not_found(web: Service) -> None:
    """An unknown rule set, or a version not loaded on either side, is a NOT_FOUND page with HTTP 404."""
    status, page = _page(web, "/rulesets/no-such-plan/diff")
    assert status == 404 and "NOT_FOUND" in page
    for query in ({"from": "1999.9", "to": "2025.1"}, {"from": "2024.1", "to": "1999.9"}):
        status, page = _page(web, "/rulesets/demo/diff", **query)
        assert status == 404 and "NOT_FOUND" in page and "1999.9" in page
