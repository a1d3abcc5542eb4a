"""The dashboard in-process: headers, sessions, refusals and the noised (sealed) view."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from headcount import wire
from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites, parse_sites, token_digest
from headcount_collector.dashboard._charts import sparkline
from headcount_collector.dashboard._periods import choose_period
from headcount_collector.dashboard._widgets import _bucket_times as bucket_times
from headcount_collector.errors import ConfigError
from headcount_collector.stores import open_store
from tests.collector.conftest import stored_snapshot
from tests.collector.noise_harness import FIRST_DAY, local_ts, noised_collector
from tests.conftest import (
    READ_TOKEN,
    SHOP_READ_TOKEN,
    WRITE_TOKEN,
    site_file_text,
)
from tests.dashboard._data import week_of_records

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(float(local_ts(FIRST_DAY + timedelta(days=3), 15)))


@pytest.fixture
def client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    settings = Settings(config_path=str(sites), seal_interval=1e6, retention_interval=1e6)
    with TestClient(create_app(settings, store, load_sites(sites), clock=clock)) as test_client:
        body = {"batch_id": "a" * 32, "sender": "t", "sender_version": "1"}
        answer = test_client.post(
            "/v1/ingest",
            json={**body, "records": week_of_records(clock.now)},
            headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
        )
        assert answer.status_code == 202, answer.text
        yield test_client
    store.close()


def _sign_in(client: TestClient, token: str = READ_TOKEN) -> Any:
    return client.post("/dashboard/sign-in", data={"token": token}, follow_redirects=False)


def test_every_dashboard_response_carries_the_strict_policy(client: TestClient) -> None:
    pages = ["/", "/dashboard/blog", "/dashboard/nosuchsite", "/dashboard/blog/csv"]
    for path in pages:
        assert client.get(path).headers["content-security-policy"] == CSP, path
    assert _sign_in(client, "wrong").headers["content-security-policy"] == CSP
    _sign_in(client)
    for path in [
        "/dashboard/blog?period=30d&compare=1",
        "/dashboard/blog/route?route=/about",
        "/dashboard/blog?period=nonsense",
    ]:
        answer = client.get(path)
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        # No script and no inline style anywhere a page could carry one.
        assert not re.search(r"<script|\sstyle=|\son[a-z]+=|javascript:", answer.text, re.I)
    stylesheet = re.search(r'href="(/dashboard/static/[^"]+)"', client.get("/").text)
    assert stylesheet is not None
    css = client.get(stylesheet.group(1))
    assert css.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in css.text


def test_session_cookie_flags_and_secure_over_https(client: TestClient) -> None:
    answer = _sign_in(client)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie
    assert READ_TOKEN not in cookie
    secure = TestClient(client.app, base_url="https://testserver")
    answer = secure.post("/dashboard/sign-in", data={"token": READ_TOKEN}, follow_redirects=False)
    assert "Secure" in answer.headers["set-cookie"]
    signed_out = client.post("/dashboard/sign-out", follow_redirects=False)
    assert 'hc_session=""' in signed_out.headers["set-cookie"]
    assert "Max-Age=0" in signed_out.headers["set-cookie"]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda value: value.replace("blog:", "shop:"),  # another site's grant
        lambda value: str(int(value.split(".")[0]) + 10) + value[value.index(".") :],  # expiry
        lambda value: value[:-1] + ("0" if value[-1] != "0" else "1"),  # the MAC
        lambda value: "9" * 400,
        lambda value: "x" * 5000,
    ],
)
def test_a_forged_session_is_refused_and_changes_nothing(client: TestClient, tamper: Any) -> None:
    value = _sign_in(client).cookies["hc_session"]
    before = stored_snapshot(client.app.state.store)  # type: ignore[attr-defined]
    client.cookies.clear()
    client.cookies.set("hc_session", tamper(value))
    answer = client.get("/dashboard/blog")
    assert answer.status_code == 401
    assert "private" in answer.text
    assert client.get("/dashboard/shop").status_code == 401
    assert stored_snapshot(client.app.state.store) == before  # type: ignore[attr-defined]


def test_a_session_expires_and_ends_when_the_read_token_is_rotated(
    client: TestClient, clock: Clock, tmp_path: Path
) -> None:
    _sign_in(client)
    assert client.get("/dashboard/blog").status_code == 200
    clock.now += 13 * 3600
    assert client.get("/dashboard/blog").status_code == 401
    clock.now -= 13 * 3600
    assert client.get("/dashboard/blog").status_code == 200
    # The blog's read token is rotated: its digest in the site file changes.
    rotated = site_file_text().replace(token_digest(READ_TOKEN).hex(), "0" * 64)
    client.app.state.sites.replace(parse_sites(rotated, "sites.toml"))  # type: ignore[attr-defined]
    assert client.get("/dashboard/blog").status_code == 401


def test_wrong_token_is_a_clear_message_and_sets_no_cookie(client: TestClient) -> None:
    for token in ["", "hcr_wrong", "x" * 300, "\x00"]:
        answer = _sign_in(client, token)
        assert answer.status_code == 401
        assert "not the read token of any site" in answer.text
        assert "set-cookie" not in answer.headers
    oversized = client.post(
        "/dashboard/sign-in",
        content=b"token=" + READ_TOKEN.encode() + b"&pad=" + b"x" * 10_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert oversized.status_code == 413
    assert "too large" in oversized.text
    assert "set-cookie" not in oversized.headers


def test_a_form_posted_from_another_origin_is_refused(client: TestClient) -> None:
    evil = {"Origin": "https://evil.example"}
    answer = client.post(
        "/dashboard/sign-in", data={"token": READ_TOKEN}, headers=evil, follow_redirects=False
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    _sign_in(client)
    assert client.post("/dashboard/sign-out", headers=evil).status_code == 403
    assert client.get("/dashboard/blog").status_code == 200
    from_elsewhere = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    assert client.post("/dashboard/sign-out", headers=from_elsewhere).status_code == 403
    same = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    answer = client.post("/dashboard/sign-out", headers=same, follow_redirects=False)
    assert answer.status_code == 303


def test_a_browser_without_fetch_metadata_must_name_the_collector_as_origin(
    client: TestClient,
) -> None:
    """Without Sec-Fetch-Site (Safari before 16.4), "null" is what a hostile page with a
    no-referrer policy makes the browser send, so it is refused; the collector's own
    pages use a same-origin referrer policy, under which its forms send their origin."""
    page = client.get("/")
    assert page.headers["referrer-policy"] == "same-origin"
    assert '<meta name="referrer" content="same-origin">' in page.text
    hostile = {"Origin": "null"}
    answer = client.post(
        "/dashboard/sign-in", data={"token": READ_TOKEN}, headers=hostile, follow_redirects=False
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    own = {"Origin": "http://testserver"}
    answer = client.post(
        "/dashboard/sign-in", data={"token": READ_TOKEN}, headers=own, follow_redirects=False
    )
    assert answer.status_code == 303
    assert client.post("/dashboard/sign-out", headers=hostile).status_code == 403
    assert client.get("/dashboard/blog").status_code == 200


def test_several_sites_make_a_switcher(client: TestClient) -> None:
    _sign_in(client)
    _sign_in(client, SHOP_READ_TOKEN)
    page = client.get("/dashboard/shop").text
    assert re.findall(r'<nav class="sites".*?</nav>', page, re.S)[0].count("<a ") == 2
    assert client.get("/dashboard/blog").status_code == 200


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("period=forever", "period"),
        ("period=custom&from=2026-03-09&to=2026-03-01", "to"),
        ("period=custom&from=2026-13-01&to=2026-03-01", "from"),
        ("period=custom&from=1900-01-01&to=1900-01-02", "from"),
        ("period=custom&from=2020-01-01&to=2026-01-01", "to"),
        ("period=custom", "from"),
    ],
)
def test_a_bad_period_names_the_parameter(client: TestClient, query: str, named: str) -> None:
    _sign_in(client)
    answer = client.get(f"/dashboard/blog?{query}")
    assert answer.status_code == 400
    assert f"{named}: " in answer.text


def test_a_bad_route_is_refused(client: TestClient) -> None:
    _sign_in(client)
    for route in ["", "no-slash", "/" + "a" * 600]:
        answer = client.get("/dashboard/blog/route", params={"route": route})
        assert answer.status_code == 400


def test_csv_is_the_api_csv_for_the_same_query(client: TestClient) -> None:
    query = "metric=pageviews&by=route&interval=total&period=ignored"
    assert client.get(f"/dashboard/blog/csv?{query}").status_code == 401
    _sign_in(client)
    mine = client.get(
        "/dashboard/blog/csv?metric=pageviews&by=route&interval=total&from=2026-03-01"
    )
    api = client.get(
        "/v1/stats?metric=pageviews&by=route&interval=total&from=2026-03-01&format=csv",
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
    )
    assert mine.status_code == 200
    assert mine.text == api.text
    assert mine.text.count("\n") > 2
    assert mine.headers["x-headcount-mode"] == "exact"
    bad = client.get("/dashboard/blog/csv?metric=secrets")
    assert bad.status_code == 400
    assert "metric" in bad.text


def test_an_unchanged_page_answers_a_conditional_get(client: TestClient) -> None:
    _sign_in(client)
    first = client.get("/dashboard/blog?period=lastmonth")
    assert first.status_code == 200
    again = client.get(
        "/dashboard/blog?period=lastmonth", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    other = client.get(
        "/dashboard/blog?period=7d", headers={"If-None-Match": first.headers["etag"]}
    )
    assert other.status_code == 200


def test_public_dashboard_is_off_unless_the_site_file_says_so() -> None:
    sites = parse_sites(site_file_text(), "sites.toml")
    assert [site.public_dashboard for site in sites] == [False, False]
    public = parse_sites(site_file_text() + "public_dashboard = true\n", "sites.toml")
    assert [site.public_dashboard for site in public] == [False, True]
    with pytest.raises(ConfigError, match="public_dashboard"):
        parse_sites(site_file_text() + 'public_dashboard = "yes"\n', "sites.toml")


def test_a_noised_site_shows_sealed_numbers_with_error_bars(tmp_path: Path) -> None:
    with noised_collector(tmp_path) as collector:
        day = FIRST_DAY
        records = week_of_records(local_ts(day, 12))
        collector.send(records, local_ts(day, 13))
        collector.seal_everything(local_ts(day + timedelta(days=2), 6))
        client = collector.client
        _sign_in(client)
        page = client.get("/dashboard/blog?period=7d").text
        assert "Sealed up to " in page
        assert "Exact counts" not in page
        shown = re.search(
            r'id="total-pageviews">.*?<data class="value" value="(\d+)" data-query="([^"]+)"',
            page,
            re.S,
        )
        assert shown is not None
        query = dict(pair.split("=") for pair in shown.group(2).replace("&amp;", "&").split("&"))
        api = collector.stats(**query)
        assert int(shown.group(1)) == api["totals"][0]["count"]
        assert f"± {api['totals'][0]['error']:.1f}" in page


def test_the_csv_refuses_a_range_too_long_to_read_quickly(client: TestClient) -> None:
    # Fewer than 10,000 months, but 280,000 days: seconds of a worker's time per request.
    _sign_in(client)
    query = "metric=visits&interval=month&from=1970-01-01&to=2735-01-01&by=route"
    started = time.perf_counter()
    answer = client.get(f"/dashboard/blog/csv?{query}")
    assert answer.status_code == 400
    assert "10000 days" in answer.text
    assert time.perf_counter() - started < 1.0


def test_every_widget_and_total_links_to_the_csv_of_its_own_query(client: TestClient) -> None:
    _sign_in(client)
    page = client.get("/dashboard/blog?period=7d&compare=1").text
    queries = re.findall(r'data-query="([^"]+)"', page)
    links = set(re.findall(r'href="/dashboard/blog/csv\?([^"]+)"', page))
    assert len(queries) > 15
    assert set(queries) <= links
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    for query in sorted(set(queries))[:: max(1, len(set(queries)) // 5)]:
        query = query.replace("&amp;", "&")
        mine = client.get(f"/dashboard/blog/csv?{query}")
        api = client.get(f"/v1/stats?{query}&format=csv", headers=headers)
        assert mine.status_code == api.status_code == 200
        assert mine.text == api.text


def test_the_site_file_alone_cannot_forge_a_session(client: TestClient, clock: Clock) -> None:
    import hashlib
    import hmac

    # Whoever reads the site file knows each read token's digest; a grant keyed by the
    # digest alone (no collector secret) must not open the dashboard.
    expires = int(clock.now) + 3600
    message = f"headcount-dashboard-session|blog|{expires}".encode()
    mac = hmac.new(token_digest(READ_TOKEN), message, hashlib.sha256).hexdigest()
    client.cookies.clear()
    client.cookies.set("hc_session", f"{expires}.blog:{mac}")
    assert client.get("/dashboard/blog").status_code == 401
    _sign_in(client)
    assert client.get("/dashboard/blog").status_code == 200


def test_the_cookie_is_secure_behind_the_tls_proxy_the_deployment_guide_asks_for(
    client: TestClient,
) -> None:
    """The collector listens on plain HTTP behind the proxy: the proxy's
    X-Forwarded-Proto makes the cookie Secure, and the https origin its own."""
    answer = client.post(
        "/dashboard/sign-in",
        data={"token": READ_TOKEN},
        headers={
            "X-Forwarded-Proto": "https",
            "Origin": "https://testserver",
            "Sec-Fetch-Site": "same-origin",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert "Secure" in answer.headers["set-cookie"]
    # Another site's page is still refused, whatever the header says.
    refused = client.post(
        "/dashboard/sign-in",
        data={"token": READ_TOKEN},
        headers={"X-Forwarded-Proto": "https", "Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert refused.status_code == 403


def test_signing_in_to_another_site_does_not_renew_the_session(
    client: TestClient, clock: Clock
) -> None:
    """One expiry signs every grant of a cookie: a second sign-in keeps the session's end,
    so a copied cookie cannot be kept alive with some other site's read token."""
    started = clock.now
    _sign_in(client)
    clock.now = started + 11 * 3600
    answer = _sign_in(client, SHOP_READ_TOKEN)
    assert answer.status_code == 303
    assert "Max-Age=3600" in answer.headers["set-cookie"]
    assert client.get("/dashboard/blog").status_code == 200
    assert client.get("/dashboard/shop").status_code == 200
    clock.now = started + 12 * 3600 + 60
    assert client.get("/dashboard/blog").status_code == 401
    assert client.get("/dashboard/shop").status_code == 401
    # A fresh sign-in with no grants left starts a full session.
    client.cookies.clear()
    assert "Max-Age=43200" in _sign_in(client, SHOP_READ_TOKEN).headers["set-cookie"]


@pytest.mark.parametrize(
    "route",
    [
        "/SECURITY-NOTICE:+this+collector+moved.+Sign+in+at+https://evil.example",
        "/u/alice.smith@example.com",
    ],
)
def test_a_route_page_shows_route_templates_only(client: TestClient, route: str) -> None:
    """Whatever a stranger puts in ?route= never becomes a page's heading."""
    _sign_in(client)
    answer = client.get("/dashboard/blog/route", params={"route": route})
    assert answer.status_code == 400
    assert "evil.example" not in answer.text
    assert "alice.smith" not in answer.text
    assert client.get("/dashboard/blog/route", params={"route": "/about"}).status_code == 200


def test_a_figure_not_shown_says_why(client: TestClient) -> None:
    """A dash alone reads as zero or as a bug; the page says what it stands for."""
    assert _sign_in(client).status_code == 303
    # Data exists only for the last week, so a month long ago releases nothing.
    page = client.get(
        "/dashboard/blog", params={"period": "custom", "from": "2020-01-01", "to": "2020-01-02"}
    )
    assert page.status_code == 200
    blocks = re.findall(r'<div class="total" id="total-([a-z_]+)">(.*?)</div>', page.text, re.S)
    assert blocks
    for key, block in blocks:
        assert "\u2013" in block, key  # an en dash
        assert 'title="not shown: a number it is worked out from is withheld' in block, key
    shown = client.get("/dashboard/blog")
    pageviews = re.search(r'id="total-pageviews">(.*?)</div>', shown.text, re.S)
    assert pageviews is not None
    assert "not shown" not in pageviews.group(1)


@pytest.mark.parametrize("preset", ["7d", "30d"])
def test_each_top_pages_small_chart_draws_that_routes_own_api_series(
    tmp_path: Path, preset: str
) -> None:
    with noised_collector(tmp_path) as collector:
        day = FIRST_DAY + timedelta(days=3)
        collector.send(week_of_records(local_ts(day, 12)), local_ts(day, 13))
        collector.seal_everything(local_ts(day + timedelta(days=1), 6))
        client = collector.client
        _sign_in(client)
        page = client.get(f"/dashboard/blog?period={preset}").text
        site = next(iter(load_sites(collector.settings.config_path)))
        now = collector.clock()
        period = choose_period({"period": preset}, site.timezone, now, None)
        drawn = 0
        for route in ("/", "/blog/{slug}", "/about", "/pricing"):
            shown = re.search(
                rf'<svg class="spark"[^>]*aria-label="{re.escape(route)} over the period".*?</svg>',
                page,
                re.S,
            )
            assert shown is not None, route
            api = collector.stats(
                metric="pageviews",
                interval=period.interval,
                filter=f"route:{route}",
                **dict(period.params()),
            )
            counts = {row["time"]: row["count"] for row in api["totals"]}
            values = [counts.get(iso, 0) for iso, _, _ in bucket_times(period, site)]
            assert sum(values) > 0
            expected = sparkline(values, f"{route} over the period")
            assert shown.group(0) == str(expected)
            drawn += 1
        assert drawn == 4


@pytest.mark.parametrize("more", ["", "&more=pages"])
def test_only_the_top_ten_rows_get_small_charts_and_never_the_folded_row(
    tmp_path: Path, more: str
) -> None:
    with noised_collector(tmp_path) as collector:
        day = FIRST_DAY + timedelta(days=3)
        routes = [wire.OTHER, *(f"/page{i}" for i in range(13))]
        records = [
            {"kind": "pageview", "hour": local_ts(day, hour), "route": route,
             "referrer": "(direct)", "entry": True, "n": 2000 - 100 * index}
            for index, route in enumerate(routes)
            for hour in (9, 10)
        ]  # fmt: skip
        collector.send(records, local_ts(day, 13))
        collector.seal_everything(local_ts(day + timedelta(days=1), 6))
        _sign_in(collector.client)
        page = collector.client.get(f"/dashboard/blog?period=7d{more}").text
        charted = re.findall(r'<svg class="spark"[^>]*aria-label="([^"]+) over the period"', page)
        top = collector.stats(
            metric="pageviews", by="route", limit="10", interval="total",
            **{"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
        )["rows"]  # fmt: skip
        ranked = [row["route"] for row in top]
        assert ranked[0] == wire.OTHER  # the folded row leads
        assert charted == ranked[1:]
        if more:
            assert "/page12" in page  # rows past the tenth are listed, without a chart
