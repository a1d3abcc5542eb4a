"""Each coarsening rule, table-driven, with hostile input next to ordinary input."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from headcount import Tracker, _coarsen, _referrer, _shapes
from headcount._bots import is_bot
from headcount._coarsen import latency_of, method_of, parse_utm
from headcount._referrer import coarsen_referrer
from headcount.wire import LATENCY_LABELS, REFERRER_PATTERN, Request

from .conftest import page

HOST = "shop.mysite.net"


@pytest.mark.parametrize(
    ("referer", "host", "site", "expected"),
    [
        ("https://www.google.com/search?q=private+question", HOST, "cross-site", "google.com"),
        # The registrable domain (Public Suffix List), never a subdomain.
        ("https://news.ycombinator.com/item?id=1", HOST, None, "ycombinator.com"),
        ("https://www.bbc.co.uk/news", HOST, None, "bbc.co.uk"),
        ("https://de.m.wikipedia.org/wiki/X", HOST, None, "wikipedia.org"),
        ("https://alice.github.io/post", HOST, None, "alice.github.io"),
        ("HTTPS://WWW.Example.ORG/Path", HOST, None, "example.org"),
        ("http://user:pass@host.io:8080/p?x=1", HOST, None, "host.io"),
        ("https://example.com./", HOST, None, "example.com"),
        ("https://bücher.de/katalog", HOST, None, "xn--bcher-kva.de"),
        ("https://t.co/abc", HOST, None, "t.co"),
        # The request's own host, with or without www / port / case: internal; and the
        # request host's registrable domain (same-site) too.
        ("https://shop.mysite.net/cart", HOST, None, "(internal)"),
        ("https://www.shop.mysite.net/cart", HOST, None, "(internal)"),
        ("https://blog.mysite.net/", HOST, None, "(internal)"),
        ("http://shop.mysite.net:8000/a", "shop.mysite.net:8000", None, "(internal)"),
        ("https://elsewhere.example.org/", HOST, "same-origin", "(internal)"),
        ("https://shop.mysite.net/", HOST, "SAME-ORIGIN", "(internal)"),
        # A site reached by its IP address or a local name: the same host and port is
        # internal (the demo's http://127.0.0.1:8000/ clicks), another port is not.
        ("http://127.0.0.1:8000/", "127.0.0.1:8000", None, "(internal)"),
        ("http://127.0.0.1:8000/a", "127.0.0.1:8000", "same-site", "(internal)"),
        ("http://[::1]:8000/", "[::1]:8000", None, "(internal)"),
        ("http://localhost:5000/x", "localhost:5000", None, "(internal)"),
        ("http://10.0.0.5/x", "10.0.0.5:80", None, "(internal)"),
        ("http://127.0.0.1:9000/", "127.0.0.1:8000", None, "(other)"),
        # No referrer.
        (None, HOST, "none", "(direct)"),
        (None, HOST, None, "(direct)"),
        ("", HOST, None, "(direct)"),
        (None, HOST, "cross-site", "(other)"),
        (None, HOST, "same-site", "(other)"),
        # Local names (issue 12: forwarded from ordinary requests before).
        ("http://jdoe-macbook.local/", HOST, None, "(other)"),
        ("http://intranet-hr/wiki", HOST, None, "(other)"),
        ("http://localhost:3000/", HOST, None, "(other)"),
        ("http://build.internal/", HOST, None, "(other)"),
        ("http://nas.lan/", HOST, None, "(other)"),
        ("http://printer.home.arpa/", HOST, None, "(other)"),
        ("http://staging.test/", HOST, None, "(other)"),
        # Hosts embedding an IP address, dotted, dashed or in hex.
        ("http://203.0.113.77.nip.io/", HOST, None, "(other)"),
        ("http://app.203-0-113-77.sslip.io/", HOST, None, "(other)"),
        ("http://cb00714d.nip.io/", HOST, None, "(other)"),
        ("http://2001-db8--1.sslip.io/", HOST, None, "(other)"),
        ("https://ec2-203-0-113-77.compute-1.amazonaws.com/", HOST, None, "(other)"),
        # Over-long or token-like names.
        ("https://" + "a" * 200 + ".com/", HOST, None, "(other)"),
        ("https://" + ".".join(["q" * 60] * 4) + ".com/", HOST, None, "(other)"),
        ("https://0123456789abcdef0123456789abcdef.com/", HOST, None, "(other)"),
        ("https://qxkzpmrtvbnjlcydfgwh.net/", HOST, None, "(other)"),
        # IP literals, other schemes, garbage.
        ("http://10.0.0.1/admin", HOST, None, "(other)"),
        ("http://[::1]:8080/", HOST, None, "(other)"),
        ("http://[2001:db8::1]/", HOST, None, "(other)"),
        ("https://2130706433/", HOST, None, "(other)"),
        ("android-app://com.google.android.gm/", HOST, None, "(other)"),
        ("javascript:alert(1)", HOST, None, "(other)"),
        ("not a url", HOST, None, "(other)"),
        ("https://", HOST, None, "(other)"),
        ("https://%65vil.com/", HOST, None, "(other)"),
        ("https://ex\x00ample.com/", HOST, None, "(other)"),
        ("https://exa mple.com/", HOST, None, "(other)"),
        ("https://-bad-.com/", HOST, None, "(other)"),
        ("https://(direct)/", HOST, None, "(other)"),
        ("https://exa\u200bmple.com/", HOST, None, "(other)"),
        ("https://\u202eelpmaxe.com/", HOST, None, "(other)"),
        ("https://" + "x" * 10_000, HOST, None, "(other)"),
        ("https://ok.example.org/" + "p" * 10_000, HOST, None, "example.org"),
        ("https://a.b.co\\@evil.example.com/", HOST, None, "b.co"),
    ],
)
def test_referrer(referer: str | None, host: str, site: str | None, expected: str) -> None:
    assert coarsen_referrer(referer, host, site) == expected


def test_user_info_in_a_referrer_never_reaches_the_referrer_cache() -> None:
    """bob:secret@ decides nothing: it is cut before the label is looked up, so the
    cache (docs/privacy.md: scheme and authority) never holds a credential."""
    lookup = _referrer._referrer_from_prefix
    lookup.cache_clear()
    assert coarsen_referrer("https://bob:secret@news.example.net/a", HOST, None) == "example.net"
    assert lookup.cache_info().currsize == 1
    lookup("https://news.example.net", HOST)  # what was cached: the prefix without it
    assert lookup.cache_info().hits == 1
    # A backslash ends the authority first: what follows it is not user info.
    assert coarsen_referrer("https://a.b.co\\@evil.example.com/", HOST, None) == "b.co"


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        ("https://accounts.example.com?email=jdoe@example.com&token=tok_9sd8f7", "example.com"),
        ("https://mail.example.net#token=tok_9sd8f7", "example.net"),
        ("https://mail.example.net\\reset?token=tok_9sd8f7", "example.net"),
        ("mailto:jdoe@example.com", "(other)"),
        ("android-app://com.example.mail/jdoe@example.com", "(other)"),
    ],
)
def test_the_referrer_cache_holds_scheme_and_authority_only(referer: str, expected: str) -> None:
    """Browsers put a slash after the host, but a hand-written header or a log line need
    not: the cache key still ends where the authority does."""
    lookup = _referrer._referrer_from_prefix
    lookup.cache_clear()
    assert coarsen_referrer(referer, HOST, "cross-site") == expected
    for key in lookup_keys(lookup):
        assert "jdoe" not in key
        assert "token" not in key


def lookup_keys(cached: object) -> list[str]:
    """The keys an lru_cache holds (what a reader of the process's memory would find)."""
    for referent in gc.get_referents(cached):
        if isinstance(referent, dict):
            return [
                str(part)
                for key in referent
                for part in (key if isinstance(key, tuple) else (key,))
            ]
    raise AssertionError("no cache found")


def test_referrer_never_leaks_path_query_or_user_info() -> None:
    result = coarsen_referrer(
        "https://alice:hunter2@mail.example.net/inbox/alice@example.com?token=abc", HOST, None
    )
    assert result == "example.net"


def test_the_public_suffix_list_is_never_fetched(tmp_path: Path) -> None:
    # A fresh interpreter with every socket refused: referrers still resolve, from the
    # list the package ships.
    script = tmp_path / "offline.py"
    script.write_text(
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network access during referrer coarsening')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from headcount._referrer import coarsen_referrer\n"
        "print(coarsen_referrer('https://news.bbc.co.uk/x', 'shop.mysite.net', None))\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "bbc.co.uk"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("utm_source=Newsletter&utm_medium=email&utm_campaign=spring-sale",
         ("newsletter", "email", "spring-sale")),
        ("page=2&utm_source=twitter", ("twitter", None, None)),
        ("utm_source=a&utm_source=b", ("a", None, None)),
        # The first occurrence wins even when its value is empty or dropped.
        ("utm_source=&utm_source=b", (None, None, None)),
        ("utm_campaign=bob%40example.com&utm_campaign=sale", (None, None, None)),
        ("utm_medium=a&utm_campaign=c&utm_medium=b&utm_source=d", ("d", "a", "c")),
        # Only whole parameters: never text inside another parameter's value.
        ("ref=utm_source=evil&utm_medium=cpc", (None, "cpc", None)),
        ("utm_source=a=b", (None, None, None)),
        # Cleaned rather than dropped (issue 14): case, percent-encoding, spaces, accents.
        ("utm_source=big+sale", ("big-sale", None, None)),
        ("utm_campaign=winter%20sale", (None, None, "winter-sale")),
        ("utm_campaign=black-friday-2025", (None, None, "black-friday-2025")),
        ("utm_campaign=q4_2025", (None, None, "q4_2025")),
        ("utm_campaign=Launch-2026", (None, None, "launch-2026")),
        ("utm_source=caf%C3%A9", ("cafe", None, None)),
        ("utm_campaign=My+Q3+Newsletter+%E2%80%94+June+2026",
         (None, None, "my-q3-newsletter-june-2026")),
        ("utm_campaign=3b5c8a9d2e-EMAIL_CAMPAIGN_2025_11_28_10_15",
         (None, None, "email_campaign_2025_11_28_10_15")),
        ("utm_campaign=7f3e2a1b0c-Black+Friday+2025", (None, None, "black-friday-2025")),
        # Per-recipient values are still dropped.
        ("utm_source=%ff%fe", (None, None, None)),
        ("utm_campaign=bob%40example.com", (None, None, None)),
        # Encoded twice: still an e-mail address, not the domain jdoe40example.com.
        ("utm_campaign=jdoe%2540example.com", (None, None, None)),
        ("utm_campaign=bob%252540example.com", (None, None, None)),
        ("utm_campaign=Black%2520Friday", (None, None, "black-friday")),
        ("utm_campaign=john.doe", (None, None, None)),
        # name.surname where the surname is also a newer generic suffix (a review got
        # these stored): only long-standing generic suffixes and country codes pass.
        ("utm_source=john.kim&utm_medium=james.bond&utm_campaign=harrison.ford",
         (None, None, None)),
        ("utm_source=chatgpt.com&utm_medium=perplexity.ai", ("chatgpt.com", "perplexity.ai", None)),
        ("utm_campaign=jdoe%2Bnewsletter", (None, None, None)),
        ("utm_campaign=qxkzpmrtvbnjlcydfgwh", (None, None, None)),
        ("utm_campaign=415-555-012-3", (None, None, None)),
        ("utm_campaign=user-1234567", (None, None, None)),
        ("utm_campaign=8f14e45fceea167a5a36dedd4bea2543", (None, None, None)),
        ("utm_source=" + "a" * 65, (None, None, None)),
        ("utm_source=" + "z" * 64, (None, None, None)),
        ("utm_source=" + "news-" * 12 + "x", ("news-" * 12 + "x", None, None)),
        ("utm_source=", (None, None, None)),
        ("xutm_source=evil&utm_medium=cpc", (None, "cpc", None)),
        ("utm_sourcex=evil", (None, None, None)),
        ("utm_term=secret&utm_content=secret&gclid=abc", (None, None, None)),
        ("token=abc&email=a@b.c", (None, None, None)),
        ("", (None, None, None)),
        (None, (None, None, None)),
        ("&" * 10_000 + "utm_source=late", (None, None, None)),
        # Only the first 4,096 characters are read: the value is cut where they end.
        ("&" * 4_084 + "utm_source=newsletter", ("n", None, None)),
    ],
)  # fmt: skip
def test_utm(query: str | None, expected: tuple[str | None, ...]) -> None:
    assert parse_utm(query) == expected
    # Asked again (the caches answer now): the same values.
    assert parse_utm(query) == expected


def test_a_campaign_value_that_names_someone_is_never_kept_in_memory() -> None:
    """The campaign caches (docs/privacy.md) keep campaign names only: an e-mail address
    or a token in a utm value is refused and checked again next time, never held."""
    refused = [
        "bob%40example.com", "jdoe%2540example.com", "jdoe%2Bnewsletter", "john.doe",
        "8f14e45fceea167a5a36dedd4bea2543", "user-1234567", "%ff%fe",
    ]  # fmt: skip
    for raw in refused:
        for _ in range(2):
            assert parse_utm(f"utm_source=news&utm_campaign={raw}") == ("news", None, None)
    refused += ["John.Smith", "jdoe.1985"]  # name.surname: asked whether it is a domain
    for raw in refused[-2:]:
        assert parse_utm(f"utm_campaign={raw}") == (None, None, None)
    kept = [
        *_coarsen._UTM_VALUES._results,
        *_shapes._campaign_slugs._results,
        *_shapes._registrable_domains._results,
    ]
    for raw in refused:
        decoded = unquote_plus(raw)
        lowered = decoded.lower()
        assert not [key for key in kept if raw in key or lowered in key.lower() or "@" in key]
    # What is sent is what is kept: the campaign name, whichever way it was written.
    assert parse_utm("utm_campaign=Black+Friday") == (None, None, "black-friday")
    assert "Black+Friday" in _coarsen._UTM_VALUES
    assert "Black Friday" in _shapes._campaign_slugs


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", "GET"), ("get", "GET"), ("Patch", "PATCH"), ("OPTIONS", "OPTIONS"),
     ("PROPFIND", "OTHER"), ("", "OTHER"), ("G\x00ET", "OTHER"), ("X" * 10_000, "OTHER"),
     ("OTHER", "OTHER")],
)  # fmt: skip
def test_method(method: str, expected: str) -> None:
    assert method_of(method) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(100, "1xx"), (204, "2xx"), (301, "3xx"), (404, "4xx"), (599, "5xx"),
     (99, "5xx"), (600, "5xx"), (0, "5xx"), (-200, "5xx"), (10**9, "5xx")],
)  # fmt: skip
def test_status_class(tracker: Tracker, status: int, expected: str) -> None:
    tracker.record_request(page(status=status))
    (request,) = [r for r in tracker.peek() if isinstance(r, Request)]
    assert request.status == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "<10ms"), (0.0099, "<10ms"), (0.01, "10ms-25ms"), (0.024999, "10ms-25ms"),
     (0.025, "25ms-50ms"), (0.1, "100ms-250ms"), (0.9999, "500ms-1s"), (1, "1s-2.5s"),
     (2.5, "2.5s-5s"), (9.999, "5s-10s"), (10, ">=10s"), (3600, ">=10s")],
)  # fmt: skip
def test_latency_range_includes_its_lower_edge(seconds: float, expected: str) -> None:
    assert latency_of(seconds) == expected


@pytest.mark.parametrize("seconds", [-1.0, -math.inf])
def test_broken_clock_latency_is_the_lowest_range(seconds: float) -> None:
    assert latency_of(seconds) == LATENCY_LABELS[0]


def test_unmeasured_latency_is_unknown() -> None:
    # NaN is how an imported access log without a request time says "not measured".
    assert latency_of(math.nan) == "unknown"


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Safari/537.36", False),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", False),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", False),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)", True),
        ("Mozilla/5.0 (compatible; Baiduspider/2.0)", True),
        ("Mozilla/5.0 (compatible; Yahoo! Slurp)", True),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", True),
        ("curl/8.5.0", True),
        ("Wget/1.21.4", True),
        ("python-requests/2.31.0", True),
        ("python-httpx/0.27.0", True),
        ("Go-http-client/1.1", True),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "HeadlessChrome/120.0.0.0 Safari/537.36", True),
        ("Mozilla/5.0 (Linux; Android 11) Chrome-Lighthouse", True),
        ("", True),
        (None, True),
        ("   ", True),
        ("x", True),
        ("Mozilla/5.0 " + "A" * 10_000 + " Googlebot", False),  # tail beyond 512 chars unread
    ],
)  # fmt: skip
def test_bot_detection(user_agent: str | None, expected: bool) -> None:
    assert is_bot(user_agent) is expected


def test_bot_detection_agrees_with_crawlerdetect_on_common_agents() -> None:
    crawlerdetect = pytest.importorskip("crawlerdetect")
    detector = crawlerdetect.CrawlerDetect()
    agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (compatible; DuckDuckBot-Https/1.1; https://duckduckgo.com/duckduckbot)",
        "Twitterbot/1.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    ]
    for agent in agents:
        assert is_bot(agent) is bool(detector.isCrawler(agent)), agent


@pytest.mark.parametrize("referer", ["https://www.google.com/", "https://shop.mysite.net/x", None])
def test_referrer_results_match_the_wire_pattern(referer: str | None) -> None:
    import re

    assert re.match(REFERRER_PATTERN, coarsen_referrer(referer, HOST, None))


def test_a_long_or_user_info_host_header_never_reaches_the_referrer_caches() -> None:
    """The referrer caches are keyed by the request's Host too, which the visitor writes:
    a megabyte Host, or one with a name in user info, is never kept (a review grew an
    app by 300 MB with 300 requests of distinct 1 MB Hosts)."""
    by_prefix, by_host = _referrer._referrer_from_prefix, _referrer.domain_of_host
    by_prefix.cache_clear()
    by_host.cache_clear()
    for index in range(50):
        huge = f"{index}" + "h" * 100_000 + ".example"
        assert coarsen_referrer("https://www.google.com/search", huge, None) == "google.com"
    # One (prefix, no host) key, and the referring host's domain: nothing per request.
    assert by_prefix.cache_info().currsize == 1
    assert by_host.cache_info().currsize == 1
    by_prefix.cache_clear()
    by_host.cache_clear()
    # User info decides nothing: the site's own pages are still internal ...
    assert coarsen_referrer("https://shop.example/cart", "jane.doe@shop.example", None) == (
        "(internal)"
    )
    # ... and what was kept is the host without it.
    by_prefix("https://shop.example", "shop.example")
    assert by_prefix.cache_info().hits == 1
    assert by_prefix.cache_info().currsize == 1
