"""The dashboard in a real browser: headless system Chromium over the DevTools protocol.

Each view must load with no console error and no CSP violation, and every number it shows
must be what /v1/stats answers for the query the widget names.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._servers import CollectorProcess, start_collector
from tests.conftest import (
    READ_TOKEN,
    SHOP_READ_TOKEN,
    SHOP_WRITE_TOKEN,
    WRITE_TOKEN,
    site_file_text,
)
from tests.dashboard._browser import Browser
from tests.dashboard._data import send, week_of_records

pytestmark = pytest.mark.slow

# Every widget's plain table and every total, as the page shows them.
_PAGE_NUMBERS = """
JSON.stringify({
  tables: [...document.querySelectorAll('table[data-query]')].map(t => ({
    query: t.dataset.query,
    columns: [...t.querySelectorAll('thead th')].map(th => th.textContent),
    rows: [...t.querySelectorAll('tbody tr')].filter(tr => !tr.querySelector('td[colspan]'))
      .map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent)),
  })),
  totals: [...document.querySelectorAll('data[data-query]')].map(d => ({
    id: d.parentElement.id, query: d.dataset.query, value: d.value,
  })),
})
"""


@pytest.fixture(scope="module")
def artifacts() -> Path:
    base = os.environ.get("HEADCOUNT_TEST_ARTIFACTS") or tempfile.gettempdir()
    path = Path(base) / "headcount-dashboard-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    tmp_path = tmp_path_factory.mktemp("dashboard")
    site_file = tmp_path / "sites.toml"
    # "blog" is private, "shop" opts into a public dashboard.
    site_file.write_text(site_file_text() + "public_dashboard = true\n", encoding="utf-8")
    server = start_collector(tmp_path, site_file)
    try:
        send(server.url, WRITE_TOKEN, week_of_records())
        send(server.url, SHOP_WRITE_TOKEN, week_of_records(events=False))
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    opened = Browser()
    try:
        yield opened
    finally:
        opened.close()


def _sign_in(browser: Browser, url: str, token: str) -> None:
    browser.open(f"{url}/")
    browser.submit("form.signin", {"#token": token})


def _api(url: str, query: str, token: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/stats?{query}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _assert_page_equals_api(browser: Browser, url: str, token: str) -> int:
    """Every table row and total on the page is the API's answer; returns rows compared."""
    import json

    shown = json.loads(browser.evaluate(_PAGE_NUMBERS))
    compared = 0
    assert shown["tables"], "no widget tables on the page"
    for table in shown["tables"]:
        answer = _api(url, table["query"], token)
        rows = answer["rows"] if answer["by"] else answer["totals"]
        expected = [[str(row.get(c, "")) for c in table["columns"]] for row in rows]
        expected = [[v.replace("True", "True") for v in r] for r in expected]
        assert table["rows"] == expected, table["query"]
        compared += len(expected)
    for total in shown["totals"]:
        answer = _api(url, total["query"], token)
        if total["id"] in ("total-bounce_rate", "total-views_per_visit"):
            key = total["id"].removeprefix("total-")
            derived = answer["derived"][key]
            scale = 100 if key == "bounce_rate" else 1
            assert float(total["value"]) == pytest.approx(derived * scale)
        else:
            expected_total = answer["totals"][0]["count"] if answer["totals"] else ""
            assert total["value"] == str(expected_total), total
        compared += 1
    return compared


def test_sign_in_wrong_token_then_right_token_then_sign_out(
    collector: CollectorProcess, browser: Browser
) -> None:
    _sign_in(browser, collector.url, "hcr_not-a-token")
    assert "not the read token" in browser.evaluate(
        "document.querySelector('#signin-error').textContent"
    )
    assert browser.cookies() == []
    (refused,) = browser.take_problems()
    assert "401" in refused  # the wrong token's answer, and nothing else

    _sign_in(browser, collector.url, READ_TOKEN)
    assert browser.url() == f"{collector.url}/dashboard/blog"
    (cookie,) = browser.cookies()
    assert cookie["name"] == "hc_session"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http here; Secure over HTTPS is tested in-process
    assert READ_TOKEN not in cookie["value"]

    # A second site's token joins the switcher instead of replacing the first.
    _sign_in(browser, collector.url, SHOP_READ_TOKEN)
    switcher = browser.evaluate("[...document.querySelectorAll('nav.sites a')].map(a => a.text)")
    assert sorted(switcher) == ["blog", "shop"]

    browser.submit("form.signout", {})
    assert browser.url() == f"{collector.url}/"
    assert browser.cookies() == []
    assert browser.problems == []
    browser.open(f"{collector.url}/dashboard/blog")
    assert "private" in browser.evaluate("document.querySelector('#refused').textContent")
    assert ["401" in problem for problem in browser.take_problems()] == [True]


@pytest.mark.parametrize("view", ["?period=7d&compare=1", "?period=24h", "?period=30d"])
def test_overview_shows_exactly_what_the_api_releases(
    collector: CollectorProcess, browser: Browser, artifacts: Path, view: str
) -> None:
    _sign_in(browser, collector.url, READ_TOKEN)
    browser.open(f"{collector.url}/dashboard/blog{view}")
    assert browser.problems == []
    assert browser.evaluate("document.querySelectorAll('script').length") == 0
    assert browser.evaluate("document.querySelectorAll('[style]').length") == 0
    assert _assert_page_equals_api(browser, collector.url, READ_TOKEN) > 20
    assert browser.evaluate("document.querySelectorAll('svg polyline').length") > 1
    name = view.strip("?").replace("&", "-").replace("=", "_")
    browser.screenshot(artifacts / f"overview-{name}-desktop.png", 1280, 900)
    browser.screenshot(artifacts / f"overview-{name}-phone.png", 390, 844, mobile=True)
    # At phone width nothing is wider than the screen (tables scroll inside their box).
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=390,
        height=844,
        deviceScaleFactor=1,
        mobile=True,
    )
    assert browser.evaluate("document.documentElement.scrollWidth") <= 390
    assert browser.problems == []


def test_route_detail_shows_what_the_api_releases_for_that_route(
    collector: CollectorProcess, browser: Browser, artifacts: Path
) -> None:
    _sign_in(browser, collector.url, READ_TOKEN)
    browser.open(f"{collector.url}/dashboard/blog?period=7d")
    first = "document.querySelector('#w-pages tbody a')"
    route, link = browser.evaluate(f"[{first}.text, {first}.href]")
    browser.open(link)
    assert browser.evaluate("document.querySelector('h1').textContent") == route
    assert _assert_page_equals_api(browser, collector.url, READ_TOKEN) > 5
    browser.screenshot(artifacts / "route-desktop.png", 1280, 900)
    assert browser.problems == []


def test_public_dashboard_needs_no_session_and_a_private_one_is_refused(
    collector: CollectorProcess, browser: Browser, artifacts: Path
) -> None:
    browser.open(f"{collector.url}/")
    assert browser.evaluate("[...document.querySelectorAll('main a')].map(a => a.text)") == ["shop"]
    browser.open(f"{collector.url}/dashboard/shop?period=7d")
    assert browser.evaluate("document.querySelector('h1').textContent") == "shop"
    assert _assert_page_equals_api(browser, collector.url, SHOP_READ_TOKEN) > 20
    assert browser.problems == []
    browser.open(f"{collector.url}/dashboard/blog?period=7d")
    assert "private" in browser.evaluate("document.querySelector('#refused').textContent")
    assert browser.evaluate("document.querySelectorAll('table').length") == 0
    assert ["401" in problem for problem in browser.take_problems()] == [True]
    csv = httpx.get(f"{collector.url}/dashboard/blog/csv?metric=pageviews&by=route")
    assert csv.status_code == 401
    assert "route,count" not in csv.text
    assert browser.problems == []


def test_the_checks_above_would_see_a_csp_violation(
    collector: CollectorProcess, browser: Browser
) -> None:
    # The control for every "no problems" assertion: an inline style attribute, which the
    # policy forbids, must be reported.
    browser.open(f"{collector.url}/")
    assert browser.problems == []
    browser.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')"
    )
    browser.settle(0.5)
    assert any("Content Security Policy" in problem for problem in browser.problems)


def test_dark_theme_and_print_follow_the_reader(
    collector: CollectorProcess, browser: Browser, artifacts: Path
) -> None:
    browser.open(f"{collector.url}/dashboard/shop?period=7d")
    background = "getComputedStyle(document.body).backgroundColor"
    light = browser.evaluate(background)
    browser.call(
        "Emulation.setEmulatedMedia",
        features=[{"name": "prefers-color-scheme", "value": "dark"}],
    )
    dark = browser.evaluate(background)
    assert light == "rgb(251, 251, 250)"
    assert dark == "rgb(18, 22, 27)"
    browser.screenshot(artifacts / "overview-dark-desktop.png", 1280, 900)
    browser.call("Emulation.setEmulatedMedia", media="print", features=[])
    assert (
        browser.evaluate("getComputedStyle(document.querySelector('form.period')).display")
        == "none"
    )
    assert (
        browser.evaluate("getComputedStyle(document.querySelector('#w-traffic svg')).display")
        == "block"
    )
    assert browser.problems == []
