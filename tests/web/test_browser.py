"""The pages in a real browser: Debian's headless Chromium (tools/browser.sh) driven by Playwright.

Screenshots go to test-output/web/ (ignored by git) for a person to look at after `make test`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from support.data import BUNDLED
from support.servers import LOOPBACK, running
from support.web import SCREENSHOTS, base_url

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make venv)")

PHONE = {"width": 390, "height": 844}  # a phone-sized screen
DESKTOP = {"width": 1280, "height": 900}


def _chromium() -> str:
    for name in ("chromium-headless-shell", "chromium"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium: tools/browser.sh installs Debian's chromium-headless-shell (as root)")


@pytest.fixture(scope="module")
def web(runtime: DurableRuntime) -> Iterator[Service]:
    with running(BUNDLED, runtime, http=f"{LOOPBACK}:0") as svc:
        yield svc


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox cannot run as root, which the test machines are.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def phone(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def test_fire_form_with_three_deaths_shows_a_major_fire_with_five_groups(web: Service, phone: Any) -> None:
    """On a phone: open the fire plan from the rule sets page, type 3 deaths, submit, and read 较大火灾 with its five groups."""
    phone.goto(base_url(web) + "/rulesets")
    phone.screenshot(path=str(SCREENSHOTS / "rulesets-phone.png"), full_page=True)
    phone.locator("#ruleset-fire-linkage a", has_text="试一试").first.click()
    phone.fill("input[name='f.deaths']", "3")
    phone.click("#submit")
    phone.wait_for_selector("#determination")
    assert phone.inner_text("#level") == "较大火灾"
    groups = phone.locator("#determination .group")
    assert groups.count() == 5
    assert all(groups.nth(i).is_visible() for i in range(5))
    assert phone.input_value("input[name='f.deaths']") == "3"  # the form keeps what was typed
    assert "deaths" not in phone.inner_text("#assumed")  # given, so not assumed
    # usable on a phone: nothing wider than the screen but the scrollable tables
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=str(SCREENSHOTS / "fire-3-deaths-phone.png"))  # what the screen shows first
    phone.screenshot(path=str(SCREENSHOTS / "fire-3-deaths-phone-full.png"), full_page=True)


def test_a_bad_value_shows_its_violation_by_the_field(web: Service, phone: Any) -> None:
    """Submitting -1 deaths shows the INVALID_ARGUMENT violation next to the deaths field and no determination."""
    phone.goto(base_url(web) + "/rulesets/fire-linkage")
    phone.fill("input[name='f.deaths']", "-1")
    phone.click("#submit")
    field = phone.locator("#field-deaths")
    field.locator(".violation").wait_for()
    assert "below the minimum 0" in field.locator(".violation").inner_text()
    assert "invalid" in (field.get_attribute("class") or "")
    assert phone.locator("#determination").count() == 0
    assert "INVALID_ARGUMENT" in phone.inner_text("#refused")
    field.scroll_into_view_if_needed()
    phone.screenshot(path=str(SCREENSHOTS / "fire-bad-value-phone.png"))


def test_explain_on_a_desktop_shows_conditions_with_values(web: Service, browser: Any) -> None:
    """On a desktop: choose an enum in the flood form, tick Explain, and see each condition with the value it saw."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(base_url(web) + "/rulesets/flood-control")
        page.select_option("select[name='f.flood_magnitude']", "considerable")
        page.check("input[name='explain']")
        page.click("#submit")
        page.wait_for_selector("#determination")
        assert "flood_magnitude" in page.inner_text("#matched")
        assert page.locator("#unmatched .cond").count() > 0
        page.screenshot(path=str(SCREENSHOTS / "flood-explain-desktop.png"), full_page=True)
    finally:
        context.close()
