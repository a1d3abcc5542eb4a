"""Route templates: every framework's syntax becomes one `{name}` form the collector accepts."""

from __future__ import annotations

from collections.abc import Container
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headcount import Tracker, _routes, _shapes, generalize_path, normalize_route, wire
from headcount.wire import route_problem
from tests.sdk.conftest import page


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # Flask / werkzeug
        ("/users/<int:id>", "/users/{id}"),
        ("/users/<username>", "/users/{username}"),
        ("/files/<path:rest>", "/files/{rest}"),
        ("/c/<string(length=2):code>/x", "/c/{code}/x"),
        # Django path(): no leading slash, trailing slash
        ("users/<int:pk>/", "/users/{pk}"),
        ("", "/"),
        # Starlette / FastAPI
        ("/users/{id:int}", "/users/{id}"),
        ("/items/{item_id}", "/items/{item_id}"),
        ("/static/{path:path}", "/static/{path}"),
        # Django re_path() regexes
        (r"^articles/(?P<year>[0-9]{4})/$", "/articles/{year}"),
        (r"^articles/(?P<year>\d{4})/(?P<slug>[-\w]+)/$", "/articles/{year}/{slug}"),
        (r"^a/([0-9]+)/b$", "/a/{id}/b"),
        (r"^page\.html$", "/page.html"),
        (r"^x/(?P<a>(b|c))/$", "/x/{a}"),
        (r"^x/.*$", "/x/{id}"),
        # A non-capturing group matches path text as any group does; lookarounds do not.
        (r"^orgs/(?P<org>[-\w]+)/(?:en|de)/legal/$", "/orgs/{org}/{id}/legal"),
        (r"^(?:en|de)/legal/$", "/{id}/legal"),
        (r"^x/(?=y)y/$", "/x/y"),
        # Regexes that carry no ^, $ or named group, classes, and literal dots.
        (r"shop/item/([a-z]+)/", "/shop/item/{id}"),
        (r"^archive/\d{4}/$", "/archive/{id}"),
        (r"^robots.txt$", "/robots.txt"),
        # werkzeug converters with arguments are not regexes.
        ("/<any(about, help):page>", "/{page}"),
        (r"^$", "/"),
        ("/", "/"),
        # No route matched, and the special values themselves
        (None, "(unmatched)"),
        ("(unmatched)", "(unmatched)"),
        ("(other)", "(other)"),
    ],
)
def test_framework_templates_become_one_syntax(template: str | None, expected: str) -> None:
    assert normalize_route(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # A raw path passed by mistake: identifiers never survive.
        ("/users/12345/orders", "/users/{id}/orders"),
        ("/u/bob@example.com", "/u/{id}"),
        ("/u/bob%40example.com", "/u/{id}"),
        ("/reset/8f14e45fceea167a5a36dedd4bea2543", "/reset/{id}"),
        ("/o/550e8400-e29b-41d4-a716-446655440000", "/o/{id}"),
        ("/t/eyJhbGciOiJIUzI1NiJ9abc123", "/t/{id}"),
        ("/ip/192.168.1.20", "/ip/{id}"),
        ("/search?q=secret", "/{id}"),
        ("/a/../etc/passwd", "/a/{id}/etc/passwd"),
        ("/a/%2e%2e/b", "/a/{id}/b"),
        ("/with space/x", "/{id}/x"),
        ("/ctl/\x00\x1f", "/ctl/{id}"),
        ("/u/{ü}", "/u/{id}"),
        ("/u/<int:ü>", "/u/{id}"),
    ],
)
def test_identifiers_and_unsafe_segments_become_placeholders(template: str, expected: str) -> None:
    assert normalize_route(template) == expected


@pytest.mark.parametrize(
    "template",
    [
        "/" + "section/" * 40,  # too long even after generalising
        "^x/($",  # unbalanced regex
    ],
)
def test_hopeless_templates_become_other(template: str) -> None:
    assert normalize_route(template) == "(other)"


@pytest.mark.parametrize(
    "template",
    [
        "/users/<int:id>",
        "/u/12345",
        "/" + "z" * 500,
        "/ünïcödé/päth",
        "/emoji/🎉",
        "\x00",
        "/a?b#c",
        "%%%",
        "//double//slashes",
        "<>{}()[]",
        "/" + "a/" * 5000,
    ],
)
def test_every_result_passes_the_wire_route_rule(template: str) -> None:
    assert route_problem(normalize_route(template)) is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users/42", "/users/{id}"),
        ("/users/42/orders/7", "/users/{id}/orders/{id}"),
        ("/users/me", "/users/me"),
        ("/blog/spring-sale", "/blog/spring-sale"),
        # Four digits in a row may be an id: the wire rule is deliberately conservative.
        ("/blog/2024-spring-sale", "/blog/{id}"),
        ("/files/8f14e45fceea167a5a36dedd4bea2543", "/files/{id}"),
        ("/u/alice@example.com/settings", "/u/{id}/settings"),
        ("/p/1?utm_source=x&token=abc", "/p/{id}"),
        ("/p/1#frag", "/p/{id}"),
        ("/", "/"),
    ],
)
def test_generalize_path(path: str, expected: str) -> None:
    assert generalize_path(path) == expected


def test_route_caches_keep_only_what_is_sent(tracker: Tracker) -> None:
    """An app that passes raw paths (set_route with request.path, generalize_path) leaves
    nothing of a visitor's identifier in any route cache; templates are remembered."""
    raw = "/account/alice.smith@example.com/reset"
    assert generalize_path(raw) == "/account/{id}/reset"
    tracker.record_request(page(route=raw))
    tracker.record_request(page(route="/articles/<int:id>"))
    counted = {key[2] for key in tracker._state.table.snapshot() if key[0] == "request"}
    assert counted == {"/account/{id}/reset", "/articles/{id}"}
    caches: list[Container[object]] = [
        tracker._route_infos,
        _routes.normalized_route,
        wire._route_problems,
        _shapes._segment_problems,
    ]
    for cache in caches:
        for value in (raw, "/account/alice.smith@example.com/reset", "alice.smith@example.com"):
            assert value not in cache, (cache, value)
    # What is sent as it is stays remembered: the caches still do their job.
    assert "/articles/<int:id>" in tracker._route_infos
    assert "/articles/<int:id>" in _routes.normalized_route
    assert "articles" in _shapes._segment_problems


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/invite/%7Bsk_live_4eC39HqLyjWDarjtT1zdp7dc%7D", "/invite/{id}"),
        ("/profile/%7Balice_smith_1985%7D", "/profile/{id}"),
        ("/profile/{alice_smith_1985}", "/profile/{id}"),
        ("/page-{a1b2c3d4e5}/x", "/{id}/x"),
        ("/lookup/(alice@example.com)", "/lookup/{id}"),
        ("/u/<alice@example.com>", "/u/{id}"),
        ("/u/{alice@example.com}", "/u/{id}"),
        ("/orders/[<uuid>]", "/orders/{id}"),
    ],
)
def test_an_identifier_in_brackets_is_neither_sent_nor_kept(
    tracker: Tracker, path: str, sent: str
) -> None:
    """Brackets in a visitor's path look like a template's parameter. Whatever is
    between them must be a name to be kept as one; otherwise it becomes {id}, as a bare
    identifier would, and the path is worked out again each time, never remembered."""
    assert generalize_path(path) == sent
    tracker.record_request(page(route=path))
    tracker.record_request(page(route=path))
    (counted,) = {key[2] for key in tracker._state.table.snapshot() if key[0] == "request"}
    # As a template (the braces read as one), a segment keeps its literal text around it.
    assert counted in (sent, "/page-{id}/x")
    assert route_problem(counted) is None
    assert path not in tracker._route_infos
    assert path not in _routes.normalized_route
    # The rule the collector applies: a route that holds the identifier is refused.
    assert route_problem(unquote(path).split("?")[0]) is not None


@pytest.mark.parametrize(
    ("template", "route"),
    [
        ("/users/<int:user_id>", "/users/{user_id}"),
        ("/users/{id:int}/posts/{post_slug}", "/users/{id}/posts/{post_slug}"),
        ("^reset/(?P<uidb64>[0-9A-Za-z_-]+)/(?P<token>.+)/$", "/reset/{uidb64}/{token}"),
        ("/orgs/<organization_membership_id>", "/orgs/{organization_membership_id}"),
    ],
)
def test_parameters_with_names_are_remembered(template: str, route: str) -> None:
    assert _routes.normalized_route(template) == (route, True)
    assert template in _routes.normalized_route


def test_the_apps_own_routes_are_remembered_even_when_a_segment_became_an_id(
    tracker: Tracker,
) -> None:
    """A route the integrations took from the app (a router's rule, a CMS page's path)
    is worked out once even when a segment had to become ``{id}``: it is the app's own
    text. The same text without that mark (an app's set_route) is worked out each time."""
    app_route, named = "/docs/section-25/page-1026/", "/docs/section-26/page-1027/"
    for _ in range(2):
        tracker.record_request(page(route=app_route, route_from_app=True))
        tracker.record_request(page(route=named))
    assert {
        key[2]: n for key, n in tracker._state.table.snapshot().items() if key[0] == "pageview"
    } == {"/docs/section-25/{id}": 2, "/docs/section-26/{id}": 2}
    assert app_route in tracker._route_infos
    assert named not in tracker._route_infos
    # Kept in the tracker's own cache only: the shared checks stay clean-only.
    assert app_route not in _routes.normalized_route
    assert "page-1026" not in _shapes._segment_problems


def _checked_twice(template: str) -> tuple[str, bool]:
    """The rule spelled out plainly: the whole route checked, and if it fails, rebuilt
    segment by segment and checked again (what ``_normalize`` does in one pass)."""
    try:
        route, named = _routes._to_braces(template.strip())
    except ValueError:
        return wire.OTHER, False
    if route_problem(route) is None:
        return route, named
    route = _routes._template(route.split("/"))
    return (route if route_problem(route) is None else wire.OTHER), False


_SEGMENTS = st.one_of(
    st.sampled_from(
        ["users", "page-12", "2024", "03", "15", "section-30", "page-1224", "<int:id>",
         "{slug}", "a1b2c3d4e5f6", "deadbeef", "café", "ﬁle", "x\u200by", "a?b", "..",
         "alice@example.com", "4155550123", "v2", "", "résumé", "\u0301x", "A" * 120,
         "{sk_live_4eC39HqLyjWDarjtT1zdp7dc}", "(alice@example.com)", "<alice_1985>", "[x]"]
    ),
    st.text(alphabet="abz019-_.~%é{}<>:", max_size=12),
)  # fmt: skip


@given(st.lists(_SEGMENTS, max_size=8), st.booleans())
def test_one_pass_normalizing_agrees_with_checking_twice(segments: list[str], slash: bool) -> None:
    template = ("/" if slash else "") + "/".join(segments)
    assert _routes._normalize(template) == _checked_twice(template)


def test_a_visitors_long_path_segments_are_ids_and_never_kept() -> None:
    """A segment longer than a whole route is never template text: it becomes {id} at
    once, neither normalized nor checked nor remembered, however plain its words (a
    review grew an app by 140 MB with 2,000 paths of 60 KB word segments)."""
    before = len(_shapes._segment_problems._results)
    for index in range(50):
        words = "-".join(["apple", "river", "stone"] * 4_000) + f"-{index}"
        assert generalize_path(f"/wiki/{words}/edit") == "/wiki/{id}/edit"
        assert normalize_route(f"/wiki/{words}") == "/wiki/{id}"
    # At most "", "wiki", "{id}" and "edit" are new: nothing per request.
    assert len(_shapes._segment_problems._results) <= before + 4
    assert not any(len(key) > 200 for key in _shapes._segment_problems._results)
    # Up to the route's length a segment is still judged on its words.
    assert generalize_path("/wiki/" + "-".join(["apple", "river"] * 16)) == (
        "/wiki/" + "-".join(["apple", "river"] * 16)
    )


def test_a_path_of_thousands_of_segments_is_other_without_judging_them() -> None:
    """A review spent 1.2 s of an app's CPU on one 16 KB path of two-letter segments: each
    number chain found was mapped to its segment by a scan. The result was (other)
    anyway, since its separators alone are longer than a route."""
    assert generalize_path("/" + "/".join(["ab"] * 5_000)) == "(other)"
    assert generalize_path("/" + "/".join(["1a"] * 201)) == "(other)"
    # 200 separators can still make a route, if its segments are short enough.
    assert generalize_path("/" * 200) == "/" * 200
    assert normalize_route(generalize_path("/a" * 201)) == "(other)"


def test_chains_over_many_segments_mark_exactly_the_segments_they_touch() -> None:
    # Each chain is mapped to its segments by a search over the segments' offsets.
    segments: list[str] = []
    expected: set[int] = set()
    for block in range(300):
        if block % 3 == 0:
            expected.update(range(len(segments), len(segments) + 3))
            segments += ["415", "555", "0123"]
        else:
            segments += ["docs", "guide"]
    assert set(_shapes.bad_route_segments(segments)) == expected


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        # An accent does not hide a random token (a review got this one stored as it was).
        ("/raw/u/qxkzpmrtvbnjlcydfgwh%C3%A9", "/raw/u/{id}"),
        ("/raw/u/%C3%A9qxkzpmrtvbnjlcydfgwh", "/raw/u/{id}"),
        # Accented words are still words.
        ("/fr/r%C3%A9servation/d%C3%A9veloppement", "/fr/réservation/développement"),
        ("/de/gesch%C3%A4ftsf%C3%BChrer", "/de/geschäftsführer"),
    ],
)
def test_accents_neither_hide_a_token_nor_make_a_word_one(path: str, sent: str) -> None:
    assert generalize_path(path) == sent
    assert route_problem(sent) is None
    # The collector refuses what the SDK would not send, with the same rules.
    refused = route_problem(unquote(path))
    if "{id}" in sent:
        assert refused == "contains a token, hash or random id; use a {placeholder}"
    else:
        assert refused is None
