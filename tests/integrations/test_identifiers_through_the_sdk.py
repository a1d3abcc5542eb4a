"""Identifiers in ordinary requests never reach a record (issue 12 §1, issue 14 §4).

A router-less WSGI app uses ``generalize_path``; browsers arrive with the referrers and
campaign links the review sent. Every record the SDK holds must also pass the collector's
own checks, and real names must come through cleaned, not dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import pytest
from werkzeug.test import Client

from headcount import Tracker, generalize_path, wire
from headcount.integrations.wsgi import HeadcountMiddleware

from .conftest import BROWSER

StartResponse = Callable[..., Any]


def page_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    environ["headcount.route"] = generalize_path(environ.get("RAW_URI") or environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<p>page</p>"]


def visit(tracker: Tracker, path: str, referer: str | None = None) -> None:
    headers = {"User-Agent": BROWSER, "Host": "shop.mysite.net"}
    if referer is not None:
        headers["Referer"] = referer
    client = Client(HeadcountMiddleware(page_app, tracker))
    assert client.get(path, headers=headers).status_code == 200


def pageviews(tracker: Tracker) -> list[wire.Pageview]:
    return [r for r in tracker.peek() if isinstance(r, wire.Pageview)]


def assert_collector_would_accept(tracker: Tracker) -> None:
    for record in pageviews(tracker):
        assert wire.route_problem(record.route) is None, record
        assert wire.referrer_problem(record.referrer) is None, record
        for value in (record.utm_source, record.utm_medium, record.utm_campaign):
            assert value is None or wire.slug_problem(value) is None, record


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        ("http://jdoe-macbook.local/notes", "(other)"),
        ("http://intranet-hr/people/jdoe", "(other)"),
        ("http://localhost:8080/", "(other)"),
        ("http://203.0.113.77.nip.io/", "(other)"),
        ("https://" + "k" * 60 + "." + "q" * 60 + "." + "z" * 60 + ".example.com/", "example.com"),
        ("https://" + "x7" * 30 + ".com/", "(other)"),
        ("https://news.ycombinator.com/item?id=4", "ycombinator.com"),
        ("https://www.google.co.uk/", "google.co.uk"),
        ("https://blog.mysite.net/post", "(internal)"),
    ],
)
def test_referrers_from_ordinary_requests(tracker: Tracker, referer: str, expected: str) -> None:
    visit(tracker, "/", referer)
    assert [p.referrer for p in pageviews(tracker)] == [expected]
    assert_collector_would_accept(tracker)


@pytest.mark.parametrize(
    ("campaign", "expected"),
    [
        # Per-recipient values the SDK forwarded before.
        ("john.doe", None),
        (quote("jdoe+newsletter"), None),
        ("qxkzpmrtvbnjlcydfgwh", None),
        ("415-555-012-3", None),
        (quote("jdoe@example.com"), None),
        ("3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b", None),
        # Real campaign names it dropped.
        ("black-friday-2025", "black-friday-2025"),
        ("q4_2025", "q4_2025"),
        ("Launch-2026", "launch-2026"),
        ("winter%20sale", "winter-sale"),
        ("3b5c8a9d2e-EMAIL_CAMPAIGN_2025_11_28_10_15", "email_campaign_2025_11_28_10_15"),
    ],
)
def test_campaigns_from_ordinary_requests(
    tracker: Tracker, campaign: str, expected: str | None
) -> None:
    visit(tracker, f"/?utm_source=newsletter&utm_campaign={campaign}")
    [record] = pageviews(tracker)
    assert (record.utm_source, record.utm_campaign) == ("newsletter", expected)
    assert_collector_would_accept(tracker)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users/john.doe", "/users/{id}"),
        ("/ip/203.0.113.77.", "/ip/{id}"),
        ("/ip/203-0-113-77", "/ip/{id}"),
        ("/u/qxkzpmrtvbnjlcydfgwh", "/u/{id}"),
        ("/u/john.doe%EF%BC%A0example.com", "/u/{id}"),
        ("/u/%C2%B9%C2%B2%C2%B3%E2%81%B4", "/u/{id}"),
        ("/a/b%E2%80%8Bc", "/a/{id}"),
        ("/a/%E2%80%AEgnp.exe", "/a/{id}"),
        ("/call/415-555-012-3", "/call/{id}"),
        ("/call/415/555/012/3", "/call/{id}/{id}/{id}/{id}"),
        ("/t/deadbeef/cafebabe", "/t/{id}/{id}"),
        ("/h/2001:db8::1.", "/h/{id}"),
        # Ordinary pages stay as they are.
        ("/blog/my-first-post", "/blog/my-first-post"),
        ("/robots.txt", "/robots.txt"),
        ("/static/app.css", "/static/app.css"),
        ("/docs/v2.1/install", "/docs/v2.1/install"),
        ("/%C3%BCber-uns", "/über-uns"),
        ("/users/42/orders", "/users/{id}/orders"),
    ],
)
def test_generalize_path_from_ordinary_requests(tracker: Tracker, path: str, expected: str) -> None:
    visit(tracker, path)
    # Request records: /robots.txt and /static/* are requests, never pageviews.
    assert [r.route for r in tracker.peek() if isinstance(r, wire.Request)] == [expected]
    assert_collector_would_accept(tracker)
