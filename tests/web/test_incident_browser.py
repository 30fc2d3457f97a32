"""An incident's page in a real browser (Debian's headless Chromium driven by Playwright): it follows
the event stream, so a level change shows without a reload. Screenshots go to test-output/web/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format

from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from liandong.v1 import incidents_pb2 as ipb
from support.incidents import ManualClock, facts, incident_service, requested
from support.servers import LOOPBACK
from support.web import SCREENSHOTS, base_url, call

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make venv)")

PHONE = {"width": 390, "height": 844}


def _chromium() -> str:
    for name in ("chromium-headless-shell", "chromium"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium: tools/browser.sh installs Debian's chromium-headless-shell (as root)")


@pytest.fixture()
def phone() -> Iterator[Any]:
    executable = _chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox cannot run as root, which the test machines are.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def _report(svc: Service, incident_id: str, request: ipb.ReportRequest) -> ipb.IncidentState:
    """A report as a caller with only curl makes it: JSON to the door."""
    reply = call(
        f"{base_url(svc)}/v1/incidents/{incident_id}:report", json_format.MessageToJson(request).encode("utf-8")
    )
    assert reply.status == 200, reply.text
    return json_format.Parse(reply.body, ipb.IncidentState())


def test_a_level_change_appears_on_the_open_page_without_a_reload(runtime: DurableRuntime, phone: Any) -> None:
    """Open an incident with a first report, report again while its page is open, and the page shows 县级指挥 and the new level change without reloading."""
    with incident_service(runtime, ManualClock(), http=f"{LOOPBACK}:0") as svc:
        first = ipb.ReportRequest(
            type="mass_incident",
            facts=facts(participants=80, local_forces_can_control=False),
            reporter="村委会",
            start_events=requested(),
        )
        assert _report(svc, "t1", first).command_level.level.code == "township"
        phone.goto(base_url(svc) + "/incidents")
        phone.screenshot(path=str(SCREENSHOTS / "incidents-phone.png"))
        phone.click("#incident-t1 a")
        phone.wait_for_selector("#feed:has-text('已连接')")  # the event stream is open
        assert phone.inner_text("#command-level") == "镇级联动"
        assert phone.locator("#timeline .level_changed").count() == 1
        phone.evaluate("window.notReloaded = true")

        second = _report(svc, "t1", ipb.ReportRequest(facts=facts(participants=150), reporter="村委会"))
        assert second.command_level.level.code == "county"
        phone.wait_for_function("document.getElementById('command-level').textContent === '县级指挥'")
        assert phone.evaluate("window.notReloaded") is True
        changes = phone.locator("#timeline .level_changed")
        assert changes.count() == 2
        assert "镇级联动 (township) → 县级指挥 (county)" in changes.nth(1).inner_text()
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        phone.screenshot(path=str(SCREENSHOTS / "incident-level-change-phone.png"))
        phone.screenshot(path=str(SCREENSHOTS / "incident-level-change-phone-full.png"), full_page=True)
        phone.locator("#timeline").screenshot(path=str(SCREENSHOTS / "incident-timeline-phone.png"))
