"""The collector enforces every coarsening rule itself (issue 12 §1, issue 14 §4).

Each value the review got stored and released with n=5 is sent to a real collector
(CLI + uvicorn) and must be refused with a 422 naming the field, storing nothing; real
route templates, referrer domains and campaign names must still be accepted and
released.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from headcount import wire
from tests._servers import CollectorProcess
from tests.collector.conftest import (
    auth,
    batch_body,
    current_hour,
    pageview,
    read_auth,
    request_record,
    sqlite_snapshot,
)

pytestmark = pytest.mark.slow

H = current_hour()
DATA_HOST = ".".join(["mzxw6ytboi" * 6] * 3) + ".mzxw6ytboimzxw6ytboi.com"  # 249 chars

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # Routes.
    ("route-name-dot-surname", pageview(route="/u/john.doe"), "route"),
    ("route-random-letters", pageview(route="/u/qxkzpmrtvbnjlcydfgwh"), "route"),
    ("route-random-letters-short", pageview(route="/invite/kfjqzwpxmvbt"), "route"),
    ("route-hex-split-by-dots", pageview(route="/t/de.ad.be.ef.ca.fe.ba.be"), "route"),
    ("route-hex-over-segments", pageview(route="/t/a1b2c3/d4e5f6/a7b8c9"), "route"),
    ("route-fullwidth-at", pageview(route="/u/john.doe\uff20example.com"), "route"),
    ("route-email", pageview(route="/u/jdoe@example.com"), "route"),
    ("route-ipv4-trailing-dot", pageview(route="/h/203.0.113.77."), "route"),
    ("route-ipv4-dashed", pageview(route="/h/203-0-113-77"), "route"),
    ("route-ipv6-trailing-dot", pageview(route="/h/2001:db8::1."), "route"),
    ("route-phone-grouped", pageview(route="/call/415-555-012-3"), "route"),
    ("route-phone-over-segments", pageview(route="/call/415/555/012/3"), "route"),
    ("route-superscript-digits", pageview(route="/u/\u00b9\u00b2\u00b3\u2074\u2075"), "route"),
    ("route-zero-width-space", pageview(route="/a/b\u200bc"), "route"),
    ("route-rtl-override", pageview(route="/a/\u202egnp.exe"), "route"),
    ("route-percent", pageview(route="/u/alice%2Ebob"), "route"),
    ("route-malformed-placeholder", pageview(route="/u/{a-b}"), "route"),
    ("request-route-too", request_record(route="/u/john.doe"), "route"),
    # Ids behind a word, and numbers split by placeholders (a 2026-12-03 review got these
    # stored).
    ("route-id-behind-letters", pageview(route="/u/user12345"), "route"),
    ("route-order-number", pageview(route="/orders/order987654321"), "route"),
    ("route-ipv4-split-by-placeholders", pageview(route="/u/203{a}0{b}113{c}77"), "route"),
    ("route-phone-split-by-placeholders", pageview(route="/u/415{a}555{b}012{c}3"), "route"),
    (
        "route-ipv4-over-placeholder-segments",
        pageview(route="/x/203/{a}/0/{b}/113/{c}/77"),
        "route",
    ),
    ("route-hex-split-by-placeholders", pageview(route="/t/dead{a}beef{b}cafe{c}abcd"), "route"),
    # Tokens split into short groups (a 2026-12-06 review got these stored).
    ("route-token-in-groups", pageview(route="/reset/kj39-xp82-mn47-qw15"), "route"),
    ("route-letters-in-groups", pageview(route="/invite/qzxkp-vwtrb-mnjfl"), "route"),
    ("route-phone-split-by-letters", pageview(route="/call/x-415-y-555-z-012-w-3"), "route"),
    ("utm-token-in-groups", pageview(utm_campaign="kj39-xp82-mn47-qw15"), "utm_campaign"),
    ("utm-seconds", pageview(utm_campaign="2025_11_28_10_15_33"), "utm_campaign"),
    ("referrer-phone", pageview(referrer="415-555-0123.com"), "referrer"),
    # Referrers.
    ("referrer-local", pageview(referrer="jdoe-macbook.local"), "referrer"),
    ("referrer-single-label", pageview(referrer="intranet-hr"), "referrer"),
    ("referrer-localhost", pageview(referrer="localhost"), "referrer"),
    ("referrer-internal", pageview(referrer="build.internal"), "referrer"),
    ("referrer-lan", pageview(referrer="nas.lan"), "referrer"),
    ("referrer-nip-io", pageview(referrer="203.0.113.77.nip.io"), "referrer"),
    ("referrer-sslip-dashed", pageview(referrer="203-0-113-77.sslip.io"), "referrer"),
    ("referrer-32-hex", pageview(referrer="0123456789abcdef0123456789abcdef.com"), "referrer"),
    ("referrer-data-hostname", pageview(referrer=DATA_HOST), "referrer"),
    ("referrer-long-label", pageview(referrer="a" * 63 + ".com"), "referrer"),
    ("referrer-subdomain", pageview(referrer="news.ycombinator.com"), "referrer"),
    ("referrer-www", pageview(referrer="www.google.com"), "referrer"),
    ("referrer-unknown-tld", pageview(referrer="shop.example"), "referrer"),
    # utm values.
    ("utm-uuid", pageview(utm_campaign="550e8400-e29b-41d4-a716-446655440000"), "utm_campaign"),
    ("utm-32-hex", pageview(utm_source="d41d8cd98f00b204e9800998ecf8427e"), "utm_source"),
    ("utm-phone", pageview(utm_campaign="415-555-012-3"), "utm_campaign"),
    ("utm-phone-plain", pageview(utm_campaign="4155550123"), "utm_campaign"),
    ("utm-ip", pageview(utm_medium="203.0.113.77"), "utm_medium"),
    ("utm-ip-dashed", pageview(utm_medium="203-0-113-77"), "utm_medium"),
    ("utm-token", pageview(utm_campaign="tok_9f8a7b6c5d4e3f2a1b0c"), "utm_campaign"),
    ("utm-name-dot-surname", pageview(utm_campaign="john.doe"), "utm_campaign"),
    ("utm-name-plus-tag", pageview(utm_campaign="jdoe+newsletter"), "utm_campaign"),
    ("utm-random-letters", pageview(utm_campaign="qxkzpmrtvbnjlcydfgwh"), "utm_campaign"),
    ("utm-long-digits", pageview(utm_campaign="user-1234567"), "utm_campaign"),
    # Values the SDK would have rewritten: only the canonical form is stored.
    ("utm-not-casefolded", pageview(utm_campaign="Black-Friday-2025"), "utm_campaign"),
    ("utm-mailchimp-prefix", pageview(utm_campaign="3b5c8a9d2e-spring-sale"), "utm_campaign"),
    ("utm-space", pageview(utm_campaign="winter sale"), "utm_campaign"),
    # Counts.
    ("n-over-ceiling", pageview(n=wire.MAX_COUNT + 1), "n"),
]


# An import's batches go to their own endpoint, under the same rules.
INGEST_PATHS = [wire.INGEST_PATH, "/v1/import/ingest"]


def post(
    server: CollectorProcess,
    records: list[dict[str, Any]],
    path: str = wire.INGEST_PATH,
    **extra: Any,
) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}",
        content=batch_body(records, **extra),
        headers=auth(),
        timeout=10,
    )


@pytest.mark.parametrize("path", INGEST_PATHS)
@pytest.mark.parametrize(("record", "field"), [pytest.param(r, f, id=i) for i, r, f in REFUSED])
def test_identifiers_are_refused_naming_the_field(
    shared_server: CollectorProcess, record: dict[str, Any], field: str, path: str
) -> None:
    before = sqlite_snapshot(shared_server.db_path)
    # A good record first: the whole batch goes, not just the bad record.
    response = post(shared_server, [pageview(route="/fine"), {**record, "n": record["n"]}], path)
    assert response.status_code == 422, response.text
    assert response.json()["path"] == f"$.records[1].{field}"
    assert sqlite_snapshot(shared_server.db_path) == before


def test_refusals_do_not_echo_the_refused_value(shared_server: CollectorProcess) -> None:
    for _, record, field in REFUSED:
        response = post(shared_server, [record])
        value = str(record[field])
        if len(value) > 3:
            assert value not in response.text, response.text


def test_visit_records_are_refused_when_the_batch_declares_visits_off(
    shared_server: CollectorProcess,
) -> None:
    visit = {"kind": "visit", "hour": H, "route": "/", "duration": "0s", "pages": "1", "n": 1}
    before = sqlite_snapshot(shared_server.db_path)
    response = post(shared_server, [pageview(), visit], visits="off")
    assert response.status_code == 422, response.text
    assert response.json()["path"] == "$.records[1]"
    assert "visits" in response.json()["error"]
    assert sqlite_snapshot(shared_server.db_path) == before
    assert post(shared_server, [pageview(), visit], visits="memory").status_code == 202


def test_undeclared_property_names_are_not_echoed(shared_server: CollectorProcess) -> None:
    name = "jdoe_example_com"
    event = {
        "kind": "event", "hour": H, "name": "signup", "route": "/signup",
        "props": {name: "pro"}, "n": 1,
    }  # fmt: skip
    response = post(shared_server, [event])
    assert response.status_code == 422
    assert response.json()["path"] == "$.records[0].props"
    assert name not in response.text


ROUTES = [
    "/", "/users/{id}", "/blog/{slug}", "/robots.txt", "/static/*", "/favicon.ico",
    "/.well-known/security.txt", "/api/v2.1/items", "/@{user}", "/über-uns",
    "/docs/getting-started", "/oauth2/callback", "/feeds/{name}.xml", "/x86_64/downloads",
]  # fmt: skip
REFERRERS = [
    "google.com", "bbc.co.uk", "alice.github.io", "xn--bcher-kva.de", "t.co",
    "ycombinator.com", "mastodon.social", "duckduckgo.com",
]  # fmt: skip
CAMPAIGNS = [
    "black-friday-2025", "q4_2025", "launch-2026", "winter-sale", "spring-sale",
    "email_campaign_2025_11_28_10_15", "my-q3-newsletter-june-2026", "finaldemand_20241122",
    "fy25-h1", "newsletter", "v2.0-launch", "cyber-monday", "top-100",
]  # fmt: skip


def test_real_routes_referrers_and_campaigns_are_accepted_and_released(
    shared_server: CollectorProcess,
) -> None:
    records = [pageview(route=r, referrer="(direct)", n=5) for r in ROUTES]
    records += [pageview(route="/", referrer=r, n=5) for r in REFERRERS]
    records += [
        pageview(route="/", utm_source="newsletter", utm_medium="email", utm_campaign=c, n=5)
        for c in CAMPAIGNS
    ]
    response = post(shared_server, records)
    assert response.status_code == 202, response.text

    def released(dimension: str) -> set[str]:
        answer = httpx.get(
            f"{shared_server.url}/v1/stats",
            params={"metric": "pageviews", "by": dimension, "interval": "total", "limit": 1000},
            headers=read_auth(),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return {row[dimension] for row in answer.json()["rows"]}

    assert set(ROUTES) <= released("route")
    assert set(REFERRERS) <= released("referrer")
    assert set(CAMPAIGNS) <= released("utm_campaign")


# --- the same examples from ordinary requests, through the SDK to the real collector ---

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HOSTILE_VISITS = [
    ("/users/john.doe", "http://jdoe-macbook.local/", "john.doe"),
    ("/ip/203.0.113.77.", "http://intranet-hr/", "jdoe%2Bnewsletter"),
    ("/ip/203-0-113-77", "http://localhost:3000/", "qxkzpmrtvbnjlcydfgwh"),
    ("/u/qxkzpmrtvbnjlcydfgwh", "http://203.0.113.77.nip.io/", "415-555-012-3"),
    ("/call/415-555-012-3", "https://" + "k" * 200 + ".com/", "jdoe%40example.com"),
]
SECRETS = [
    "john.doe", "203.0.113.77", "203-0-113-77", "qxkzpmrtvbnjlcydfgwh", "415-555-012-3",
    "jdoe", "macbook", "intranet", "localhost", "nip.io", "kkkkkkkk",
]  # fmt: skip


def test_identifiers_in_ordinary_requests_never_reach_the_collector(
    shared_server: CollectorProcess,
) -> None:
    from werkzeug.test import Client

    from headcount import Tracker, generalize_path
    from headcount.integrations.wsgi import HeadcountMiddleware
    from tests.conftest import SHOP_READ_TOKEN, SHOP_WRITE_TOKEN

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["headcount.route"] = generalize_path(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>page</p>"]

    tracker = Tracker(shared_server.url, SHOP_WRITE_TOKEN, flush_interval=3600)
    try:
        client = Client(HeadcountMiddleware(app, tracker))
        for path, referer, campaign in HOSTILE_VISITS:
            query = f"utm_source=newsletter&utm_campaign={campaign}"
            headers = {"User-Agent": BROWSER, "Host": "shop.mysite.net", "Referer": referer}
            assert client.get(f"{path}?{query}", headers=headers).status_code == 200
        client.get(
            "/blog/launch?utm_campaign=Black+Friday+2025&utm_source=Newsletter",
            headers={"User-Agent": BROWSER, "Referer": "https://news.ycombinator.com/item"},
        )
        assert tracker.flush(timeout=10)
        assert tracker.stats().dropped == 0
    finally:
        tracker.shutdown(timeout=2)

    released = ""
    for dimension in ("route", "referrer", "utm_campaign", "utm_source"):
        answer = httpx.get(
            f"{shared_server.url}/v1/stats",
            params={"metric": "pageviews", "by": dimension, "interval": "total", "limit": 1000},
            headers=read_auth(SHOP_READ_TOKEN),
            timeout=10,
        )
        assert answer.status_code == 200
        released += answer.text
    for secret in SECRETS:
        assert secret not in released
    for cleaned in ("/blog/launch", "ycombinator.com", "black-friday-2025", "/users/{id}"):
        assert cleaned in released
