"""Route templates: one `{name}` syntax for every framework, and a path generaliser."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from headcount._caches import CleanOnlyCache
from headcount._shapes import bad_route_segments, normalize_text
from headcount.wire import (
    FORBIDDEN_ROUTE_CHARS,
    MAX_ROUTE_LENGTH,
    OTHER,
    UNMATCHED,
    route_problem,
)

__all__ = ["generalize_path", "normalize_route", "normalized_route"]

_ID = "{id}"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Flask/werkzeug and Django path converters: <name>, <int:name>, <string(length=2):name>.
_ANGLE = re.compile(r"<(?:[^<>]*:)?([^<>:]*)>")
# Starlette: {name} or {name:converter}.
_BRACE = re.compile(r"\{([^{}:]*)(?::[^{}]*)?\}")
_REGEX_HINT = re.compile(r"^\^|\(\?P<|(?<!\\)\$$|(?<!\\)[(\[]")
# What may stay in a template once regex groups are gone: escaped literals only.
_REGEX_ESCAPE = re.compile(r"\\(.)")
_REGEX_META = re.compile(r"[\\^$.|?*+()\[\]{}]")
# `\d`, `\w`, `\s`…: an escaped letter or digit is a character class, not a literal.
_REGEX_CLASS = re.compile(r"\\[A-Za-z0-9]")
# A dot between word characters (`robots.txt`) is meant literally, however it is written.
_WORD_DOT = re.compile(r"(?<=\w)\.(?=\w)")
_GROUP_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class _Conversion:
    """Whether every parameter of a template kept a name of its own. A parameter made
    ``{id}`` (an unnamed regex group, a pattern in a segment, or bracketed text that is
    no name, such as ``<alice@example.com>`` in a visitor's path) means the text may not
    be the app's: its route is then worked out again each time, never remembered."""

    __slots__ = ("anonymous",)

    def __init__(self) -> None:
        self.anonymous = False

    def placeholder(self, name: str) -> str:
        # A name that is an identifier ({sk_live_4eC39…}) is the segments' check to
        # refuse (_shapes), as the collector's is.
        if _NAME.fullmatch(name):
            return "{" + name + "}"
        self.anonymous = True
        return _ID

    def unnamed(self) -> str:
        self.anonymous = True
        return _ID


def _replace_regex_groups(pattern: str, conversion: _Conversion) -> str:
    """Replace each top-level `( … )` group with `{name}` (named) or `{id}` (unnamed)."""
    out: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if depth == 0:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "(":
            if depth == 0:
                start = i
            depth += 1
        elif char == ")" and depth > 0:
            depth -= 1
            if depth == 0:
                group = pattern[start : i + 1]
                named = re.match(r"\(\?P<([^>]*)>", group)
                if named:
                    out.append(conversion.placeholder(named.group(1)))
                elif not group.startswith("(?") or group.startswith("(?:"):
                    # A non-capturing group matches path text too (en|de): dropped, it
                    # left /orgs/{org}//legal.
                    out.append(conversion.unnamed())
                # Other (?…) groups (lookarounds, flags) match no path text of their own.
        elif depth == 0:
            out.append(char)
        i += 1
    if depth:
        raise ValueError("unbalanced regex group")
    return "".join(out)


def _from_regex(pattern: str, conversion: _Conversion) -> str:
    body = pattern.removeprefix("^")
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    body = _replace_regex_groups(body, conversion)
    # A segment still holding an unescaped quantifier, class or wildcard matches many
    # literal paths, so it is a placeholder too; escaped characters are literal text.
    segments = []
    for segment in body.split("/"):
        literal = _WORD_DOT.sub("", segment)
        stripped = _GROUP_PLACEHOLDER.sub("", _REGEX_ESCAPE.sub("", literal))
        if _REGEX_CLASS.search(literal) or _REGEX_META.search(stripped):
            segments.append(conversion.unnamed())
        else:
            segments.append(_REGEX_ESCAPE.sub(r"\1", segment))
    return "/".join(segments)


def _to_braces(template: str) -> tuple[str, bool]:
    """``template`` in ``{name}`` syntax, and whether every parameter kept a name
    (``_Conversion``)."""
    conversion = _Conversion()
    if _REGEX_HINT.search(template):
        template = _from_regex(template, conversion)
    if "<" in template:
        template = _ANGLE.sub(lambda m: conversion.placeholder(m.group(1)), template)
    if "{" in template:
        template = _BRACE.sub(lambda m: conversion.placeholder(m.group(1)), template)
    if not template.startswith("/"):
        # Django `path()` / `re_path()` routes have no leading slash.
        template = "/" + template
    # Frameworks differ on trailing slashes (Django always has one); one spelling per route.
    if len(template) > 1:
        template = template.rstrip("/") or "/"
    return template, not conversion.anonymous


def _template(segments: list[str]) -> str:
    """Segments joined into a template, each one that is not template text as ``{id}``."""
    normalized = []
    for segment in segments:
        if len(segment) > MAX_ROUTE_LENGTH:
            # Never template text: skip normalizing what may be a visitor's megabyte.
            normalized.append(_ID)
            continue
        text = normalize_text(segment)
        normalized.append(_ID if text is None or FORBIDDEN_ROUTE_CHARS.search(text) else text)
    bad = bad_route_segments(normalized)
    return "/".join(_ID if index in bad else s for index, s in enumerate(normalized))


def normalize_route(template: str | None) -> str:
    """A framework's route template in one `{name}` syntax that the collector accepts.

    ``/users/<int:id>`` (Flask), ``users/<int:pk>/`` (Django ``path``),
    ``/users/{id:int}`` (Starlette) and ``^users/(?P<id>[0-9]+)/$`` (Django ``re_path``)
    all become ``/users/{id}`` (a trailing slash is dropped). None, meaning no route matched,
    becomes ``(unmatched)``. Segments that still look like identifiers become ``{id}``;
    a template that cannot be made acceptable (too long, say) becomes ``(other)``.

    Results are remembered for templates that needed no ``{id}``: an app has few, while
    one that had an identifier in it may be a visitor's path (see ``_caches``).
    """
    return normalized_route(template)[0]


def _normalize(template: str | None) -> tuple[str, bool]:
    """(the route ``normalize_route`` gives, whether ``template`` was template text as
    written: no segment had to become ``{id}``, nothing was refused)."""
    if template is None:
        return UNMATCHED, True
    if not isinstance(template, str):
        return OTHER, False
    if template in (UNMATCHED, OTHER):
        return template, True
    try:
        route, named = _to_braces(template.strip())
    except ValueError:
        return OTHER, False
    segments = route.split("/")
    if _plain(route):
        # What route_problem would check, with the segments' verdicts kept: a route
        # with a number in it is not remembered (see _caches) and comes back on every
        # request, so it is checked once here rather than again by _template.
        bad = bad_route_segments(segments)
        if not bad:
            return route, named
        route = "/".join(_ID if index in bad else s for index, s in enumerate(segments))
    elif route_problem(route) is None:
        return route, named
    else:
        route = _template(segments)
    return (route if route_problem(route) is None else OTHER), False


def _plain(route: str) -> bool:
    """Whether ``route`` passes every check of a template but its segments' (so that
    ``_template`` would leave each segment as it is)."""
    return (
        len(route) <= MAX_ROUTE_LENGTH
        and route.startswith("/")
        and normalize_text(route) == route
        and FORBIDDEN_ROUTE_CHARS.search(route) is None
    )


# (route, clean) per template, kept for clean templates only.
normalized_route: Final = CleanOnlyCache[str | None, tuple[str, bool]](
    _normalize, lambda _, result: result[1], maxsize=2048
)


def generalize_path(path: str) -> str:
    """A route-like template for a raw request path, for apps without a router.

    Segments are percent-decoded and NFKC-normalised; any all-digit segment and any
    segment that is not template text (long or grouped numbers, UUIDs, hex strings,
    tokens, random ids, e-mail addresses, name.surname forms, IP addresses, invisible
    characters) becomes ``{id}``; the query string and fragment are cut off unread.
    Opt-in: prefer the framework's own template.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    raws = path.split("/")
    if len(raws) - 1 > MAX_ROUTE_LENGTH:
        # Its separators alone are longer than a route may be: (other), whatever the
        # segments hold, and none of a visitor's thousands of them is looked at.
        return OTHER
    segments = []
    for raw in raws:
        try:
            segment = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            segment = _ID
        if segment.isdigit() or "/" in segment:
            segment = _ID
        segments.append(segment)
    return _template(segments)
