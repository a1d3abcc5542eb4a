"""The one definition of route segments, campaign slugs and referrer domains."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headcount import generalize_path, wire
from headcount._shapes import campaign_slug, referrer_domain, segment_problem

# Real campaign names, as people and tools type them, and what is kept.
CAMPAIGNS_THAT_SURVIVE = [
    ("black-friday-2025", "black-friday-2025"),
    ("q4_2025", "q4_2025"),
    ("Launch-2026", "launch-2026"),
    ("winter sale", "winter-sale"),
    ("Q2 Launch Week 1", "q2-launch-week-1"),
    ("My Q3 Newsletter \u2014 June 2026", "my-q3-newsletter-june-2026"),
    ("3b5c8a9d2e-EMAIL_CAMPAIGN_2025_11_28_10_15", "email_campaign_2025_11_28_10_15"),
    ("a1b2c3d4e5-Black Friday 2025", "black-friday-2025"),
    ("finaldemand_20241122", "finaldemand_20241122"),
    ("Mother\u2019s Day!", "mothers-day"),
    ("Soldes d'\u00e9t\u00e9", "soldes-dete"),
    ("Spring Sale!", "spring-sale"),
    ("newsletter", "newsletter"),
    ("cpc", "cpc"),
    ("fy25-h1", "fy25-h1"),
    ("v2.0-launch", "v2.0-launch"),
    ("top-100", "top-100"),
    ("back_to_school", "back_to_school"),
    ("cybermonday", "cybermonday"),
    ("2025-11-28", "2025-11-28"),
    ("chatgpt.com", "chatgpt.com"),
    ("20% off", "20-off"),
    ("#BlackFriday", "blackfriday"),
    ("fb/ig", "fb-ig"),
    ("Tom & Jerry", "tom-jerry"),
    ("Geschäftsbericht 2025", "geschaftsbericht-2025"),
]
# Values that name a recipient: never kept, however they are cleaned.
PER_RECIPIENT = [
    "jdoe@example.com",
    "jdoe\uff20example.com",
    "john.doe",
    "jane.q.public",
    "jdoe.example.com",
    "jdoe+newsletter",
    "550e8400-e29b-41d4-a716-446655440000",
    "550e8400e29b41d4a716446655440000",
    "d41d8cd98f00b204e9800998ecf8427e",
    "deadbeefcafe1234",
    "user-1234567",
    "4155550123",
    "415-555-012-3",
    "+1 415 555 0123",
    "(415) 555-0123",
    "203.0.113.77",
    "203-0-113-77",
    "2001:db8::1",
    "qxkzpmrtvbnjlcydfgwh",
    "tok_9f8a7b6c5d4e3f2a1b0c",
    "a1b2c3d4e5f6",
    "ab12-cd34-ef56",
    "2025-11-28-dead-beef-cafe-babe",
    # Codes and phone numbers written in groups (2026-12-06 reviews got these sent).
    "kj39-xp82-mn47-qw15",
    "ab1-cd2-ef3-gh4-ij5",
    "rogu-bbba-yn3b-o47o",
    "s919d-1weo5-dnetn-4zb92",
    "qzxkp-vwtrb-mnjfl",
    "x-415-y-555-z-012-w-3",
    "x-415-y-555-z-012",
    # A timestamp to the second is no campaign's name.
    "2025_11_28_10_15_33",
    "x\u200bsale",
    "\u202esale",
    "\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077",
    "",
    "-",
    "x" * 65,
]


@pytest.mark.parametrize(("raw", "expected"), CAMPAIGNS_THAT_SURVIVE)
def test_real_campaign_names_survive_cleaned(raw: str, expected: str) -> None:
    assert campaign_slug(raw) == expected
    assert wire.slug_problem(expected) is None


@pytest.mark.parametrize("raw", PER_RECIPIENT)
def test_per_recipient_values_are_refused(raw: str) -> None:
    assert campaign_slug(raw) is None
    assert wire.slug_problem(raw) is not None


@given(st.text(max_size=80))
def test_cleaning_is_idempotent_so_the_collector_can_demand_the_canonical_form(
    raw: str,
) -> None:
    cleaned = campaign_slug(raw)
    if cleaned is not None:
        assert campaign_slug(cleaned) == cleaned
        assert wire.slug_problem(cleaned) is None


@given(st.lists(st.text(max_size=12), max_size=8))
def test_generalize_path_always_yields_what_the_collector_accepts(segments: list[str]) -> None:
    route = generalize_path("/" + "/".join(segments))
    if len(route) <= wire.MAX_ROUTE_LENGTH:
        assert wire.route_problem(route) is None, route


@pytest.mark.parametrize(
    "segment",
    [
        "users", "{id}", "{slug}.html", "robots.txt", "*", "v2", "v2.1", "1.0.0", "@{user}",
        ".well-known", "jquery.min.js", "über-uns", "checkout", "oauth2", "x86_64",
        "datenschutz", "impressum", "kontakt-formular", "sitemap.xml", "{name}:cancel",
        "getting-started", "404", "2fa", "sha256sum", "favicon.ico", "subscriptions",
        # Technical series and abbreviations in groups: they repeat their letters, are
        # short, or are words (a review found the first version of the rule refused them).
        "html5-css3-js", "mp3-to-mp4", "pdf-to-jpg-converter", "4k-hdr-tv", "ddl-dml-dcl",
        "h264-aac-mp4", "ssh-gpg-tls", "plan-a-vs-plan-b", "q-and-a", "a-z-index", "b2b-saas",
        "e2e4-e7e5-g1f3", "e4-e5-nf3-nc6", "css-html-js-php", "pdf-png-jpg-svg", "h1-h2-h3",
        "mp3-mp4-m4a", "x86-x64-arm64", "k8s-k3s-k0s", "i3-i5-i7-i9", "q1-q2-q3-q4",
        "dns-tls-ssh-ftp", "html-json-yaml-toml", "iphone15-s24-px8", "b2b-b2c-d2c",
    ],
)  # fmt: skip
def test_template_text_is_not_an_identifier(segment: str) -> None:
    assert segment_problem(segment) is None


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/users/u1234567", "/users/{id}"),
        ("/orders/order987654321/invoice", "/orders/{id}/invoice"),
        ("/a/acct1234567890", "/a/{id}"),
        ("/r/ref2024123456", "/r/{id}"),
        ("/docs/iso8601", "/docs/{id}"),
        ("/shop/item42/reviews", "/shop/item42/reviews"),
        ("/video/h264/720p", "/video/h264/720p"),
        # A name with a file extension is still a name; build words between name and
        # extension are not.
        ("/u/jane.doe.gmail.com.txt", "/u/{id}"),
        ("/p/alice.smith.json", "/p/{id}"),
        ("/u/john.smith.pdf", "/u/{id}"),
        ("/static/bootstrap.bundle.min.js", "/static/bootstrap.bundle.min.js"),
        ("/static/jquery-3.6.0.min.js", "/static/jquery-3.6.0.min.js"),
        ("/static/app.js.map", "/static/app.js.map"),
        ("/dl/archive.tar.gz", "/dl/archive.tar.gz"),
        ("/types/index.d.ts", "/types/index.d.ts"),
        # Tokens and numbers split into short groups, and a hardware address.
        ("/reset/kj39-xp82-mn47-qw15", "/reset/{id}"),
        ("/invite/qzxkp-vwtrb-mnjfl", "/invite/{id}"),
        ("/activate/s919d-1weo5-dnetn-4zb92", "/activate/{id}"),
        ("/call/x-415-y-555-z-012-w-3", "/call/{id}"),
        ("/mac/aa-bb-cc-dd-ee-ff", "/mac/{id}"),
        ("/courses/html5-css3-js", "/courses/html5-css3-js"),
    ],
)
def test_ids_behind_letters_and_names_with_extensions_become_placeholders(
    path: str, template: str
) -> None:
    """A long number inside a word (user12345) is an id as a bare one is, and a name is
    a name with a file extension on it; short numbers in words (h264, item42) and build
    words between a file's name and extension (bundle.min.js) are template text."""
    assert generalize_path(path) == template
    assert wire.route_problem(template) is None


@pytest.mark.parametrize(
    "route",
    [
        "/u/203{a}0{b}113{c}77",
        "/u/415{a}555{b}012{c}3",
        "/x/203/{a}/0/{b}/113/{c}/77",
        "/t/dead{a}beef{b}cafe{c}abcd",
        "/t/{a}de{b}ad{c}be{d}ef{e}ca{f}fe{g}ba{h}be",
    ],
)
def test_placeholders_do_not_hide_a_split_number_or_hex_string(route: str) -> None:
    assert wire.route_problem(route) is not None


@pytest.mark.parametrize(
    "route",
    [
        "/api/v2/{org}/repos/{repo}/issues/{number}/comments",
        "/feed/{id}/add",
        "/2/{x}/3",
        "/items/{id}/1/{part}/2",
        "/blog/{year}/{month}/{slug}",
        "/a/{x}/b/{y}/c/{z}/d",
        "/h264/{id}/mp4",
        "/v1.2/{id}/page/{n}",
    ],
)
def test_templates_with_placeholders_between_short_parts_are_accepted(route: str) -> None:
    assert wire.route_problem(route) is None


def test_random_letter_ids_are_recognised_and_words_are_not() -> None:
    rng = random.Random(12)
    ids = ["".join(rng.choices(string.ascii_lowercase, k=16)) for _ in range(2000)]
    flagged = sum(segment_problem(i) is not None for i in ids)
    assert flagged / len(ids) > 0.95, flagged
    words = [
        "newsletter",
        "documentation",
        "notifications",
        "preferences",
        "troubleshooting",
        "installation",
        "leaderboard",
        "screenshots",
        "transactions",
        "acknowledgements",
        "authorization",
        "deutschland",
        "rechtsschutzversicherung",
        "geschaeftsstelle",
        "nightscripts",
        "wordpress",
        "javascript",
        "stylesheet",
        "dashboard",
        "configuration",
        "administration",
        "changelog",
        "playground",
    ]
    assert [w for w in words if segment_problem(w) is not None] == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.google.com", "google.com"),
        ("news.bbc.co.uk", "bbc.co.uk"),
        ("m\u00fcnchen.de", "xn--mnchen-3ya.de"),
        ("alice.github.io", "alice.github.io"),
        ("jdoe-macbook.local", None),
        ("intranet-hr", None),
        ("localhost", None),
        ("printer.home.arpa", None),
        ("203.0.113.77.nip.io", None),
        ("203-0-113-77.sslip.io", None),
        ("cb00714d.nip.io", None),
        ("0123456789abcdef0123456789abcdef.com", None),
        ("a" * 41 + ".com", None),
        ("b" * 64 + ".example.com", None),
        ("example.invalid", None),
        # A phone number or a token split into groups is no site's name.
        ("415-555-0123.com", None),
        ("kj39-xp82-mn47.com", None),
        ("1-800-flowers.com", "1-800-flowers.com"),
        ("123-reg.co.uk", "123-reg.co.uk"),
        ("24-7-news.com", "24-7-news.com"),
        ("24-7-365.com", "24-7-365.com"),
        ("bmw-e90-e91-e92.com", "bmw-e90-e91-e92.com"),
        ("aeba-gbaf-aydq.com", None),
    ],
)
def test_referrer_domains(host: str, expected: str | None) -> None:
    assert referrer_domain(host) == expected
