"""Route templates for logged paths: the app's own router, or generalized paths.

Each resolver answers ``(template, excluded)`` for a method and path, where the template
is in the framework's own syntax (the Tracker normalizes it exactly as for live traffic)
and None means no route matched. Answers are cached per (method, path, host).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final, Protocol

from headcount._routes import generalize_path

__all__ = ["RouteResolver", "load_resolver"]

_CACHE_SIZE: Final = 16384
Resolved = tuple[str | None, bool]


class RouteResolver(Protocol):
    def __call__(self, method: str, path: str, host: str | None) -> Resolved: ...


def _cached(resolve: Callable[[str, str, str | None], Resolved]) -> RouteResolver:
    return lru_cache(maxsize=_CACHE_SIZE)(resolve)


def _cached_unless_shaped(
    resolve: _FlaskRoutes | _StarletteRoutes | _DjangoRoutes,
) -> RouteResolver:
    """A router's answers cached per path, unless it keeps them per digit shape (a path
    without digits being its own shape): a log's paths of ids would each be new to a
    per-path cache."""
    return resolve if resolve.blindness != _BLIND_NONE else _cached(resolve)


def load_resolver(
    app: str | None, django_settings: str | None, routes_file: str | None
) -> RouteResolver:
    """The resolver for ``--app MODULE:ATTR``, ``--django-settings MOD`` or neither."""
    if app is not None:
        target = _load_attribute(app)
        if hasattr(target, "url_map"):
            return _cached_unless_shaped(_FlaskRoutes(target))
        if hasattr(target, "routes") or hasattr(target, "router"):
            return _cached_unless_shaped(_StarletteRoutes(target))
        raise ValueError(f"{app} is neither a Flask app nor a Starlette/FastAPI app")
    if django_settings is not None:
        return _cached_unless_shaped(_DjangoRoutes(django_settings))
    return _cached(_PathRoutes(_read_routes_file(routes_file) if routes_file else []))


def _importing(what: str, module_name: str) -> Any:
    """``module_name`` imported as the app's server would: from the current directory
    too (gunicorn and uvicorn put it on the path), with a failure said in one line."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name != exc.name and not module_name.startswith(exc.name + "."):
            raise ValueError(
                f"{what}: importing {module_name} needs {exc.name!r}, which is not "
                "installed in this environment (install the app's dependencies here)"
            ) from None
        raise ValueError(
            f"{what}: no module named {exc.name!r} (run from the project's directory, or "
            "set PYTHONPATH to it)"
        ) from None
    except Exception as exc:  # the app's own code failed to load
        raise ValueError(
            f"{what}: importing {module_name} raised {type(exc).__name__}: {exc} (does it "
            "need environment variables or settings that the server gives it?)"
        ) from None


def _load_attribute(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError("--app takes MODULE:ATTR, such as myapp.wsgi:app")
    target: Any = _importing(f"--app {spec}", module_name)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"--app {spec}: {module_name} has no {attribute!r}") from None
    return target


class _PathRoutes:
    """Without a router: the paths's template from the routes file, else
    ``generalize_path``. A routes file holds one template per line (``/users/{id}``)."""

    def __init__(self, templates: list[list[str]]) -> None:
        self._templates = templates

    def __call__(self, method: str, path: str, host: str | None) -> Resolved:
        path = path.split("?", 1)[0]
        segments = path.rstrip("/").split("/") if path != "/" else [""]
        for template in self._templates:
            if len(template) == len(segments) and all(
                part == segment or (part.startswith("{") and part.endswith("}") and segment)
                for part, segment in zip(template, segments, strict=True)
            ):
                return "/".join(template) or "/", False
        return generalize_path(path), False


def _read_routes_file(path: str) -> list[list[str]]:
    templates = []
    with open(path, encoding="utf-8") as stream:
        for raw in stream:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if not line.startswith("/"):
                raise ValueError(f"{path}: a route template starts with '/': {line!r}")
            templates.append(line.rstrip("/").split("/") if line != "/" else [""])
    # Literal segments first, so /users/new wins over /users/{id}.
    templates.sort(key=lambda parts: sum(part.startswith("{") for part in parts))
    return templates


class _FlaskRoutes:
    """Werkzeug's ``url_map`` matching, as Flask does for the live request.

    A log holds a path per id (``/users/1``, ``/users/2``, ...), each new to every cache
    and each a full match. When no rule of the map can tell one digit from another (see
    ``_digit_blindness``), paths that differ only in their digits match alike, so one
    match answers for all of them: the path's digits are zeros in the key."""

    def __init__(self, app: Any) -> None:
        from werkzeug.exceptions import HTTPException
        from werkzeug.routing import RequestRedirect

        self._url_map = app.url_map
        self._misses = (HTTPException, RequestRedirect)
        self._adapters: dict[str, Any] = {}
        self.blindness = _digit_blindness(self._url_map)
        self._by_shape: dict[tuple[str, str, str], Resolved] = {}

    def __call__(self, method: str, path: str, host: str | None) -> Resolved:
        server = host or "localhost"
        path = path.split("?", 1)[0]
        if self.blindness == _BLIND_NONE:
            return self._match(method, path, server)  # load_resolver caches it per path
        shape = _digit_shape(path, self.blindness) or path
        return _per_shape(
            self._by_shape, (method, shape, server), lambda: self._match(method, path, server)
        )

    def _match(self, method: str, path: str, server: str) -> Resolved:
        adapter = self._adapters.get(server)
        if adapter is None:
            # Binding is per host, not per path; a log names few hosts (bounded anyway).
            if len(self._adapters) >= 256:
                self._adapters.clear()
            adapter = self._adapters[server] = self._url_map.bind(server)
        try:
            rule, _ = adapter.match(path, method=method, return_rule=True)
        except self._misses:
            return None, False
        return str(rule.rule), False


# How far a map's rules are blind to digits: every digit of a path (ALL), the digits of
# all-digit segments (SEGMENTS: some literal such as "v1" has a digit), or none.
_BLIND_NONE: Final = 0
_BLIND_SEGMENTS: Final = 1
_BLIND_ALL: Final = 2
_ZEROS: Final = str.maketrans("123456789", "000000000")
_CONVERTER: Final = re.compile(r"<[^<>]*>")


def _digit_blindness(url_map: Any) -> int:
    """Whether every rule of a werkzeug map matches a path exactly as it matches the same
    path with other digits in place of its digits (one digit for one, so lengths stay).

    That holds when each converter's pattern treats all digits alike and its check does
    not read the value (no ``min``/``max``, no custom converter), and no literal part of
    a rule can equal a segment whose digits changed. Rules with defaults (which redirect
    by value), aliases or a redirect function make the map not blind; so does anything
    unrecognised, such as an app's own map, rule or converter class."""
    from werkzeug.routing import Map, Rule
    from werkzeug.routing.converters import (
        AnyConverter,
        FloatConverter,
        IntegerConverter,
        PathConverter,
        UnicodeConverter,
        UUIDConverter,
    )

    if type(url_map) is not Map:
        return _BLIND_NONE  # an app's own map class may match differently
    numbers = frozenset(("map", "regex", "fixed_digits", "min", "max", "signed"))
    stock: _Stock = {
        UnicodeConverter: (re.compile(r"\[\^/\]\{\d*(,\d*)?\}"), frozenset(("map", "regex"))),
        PathConverter: (re.compile(re.escape("[^/].*?")), frozenset(("map",))),
        IntegerConverter: (re.compile(r"(-\?)?\\d\+"), numbers),
        FloatConverter: (re.compile(r"(-\?)?\\d\+\\\.\\d\+"), numbers),
        UUIDConverter: (
            re.compile(re.escape("-".join(f"[A-Fa-f0-9]{{{n}}}" for n in (8, 4, 4, 4, 12)))),
            frozenset(("map",)),
        ),
        AnyConverter: (re.compile(r"\(\?:.*\)", re.DOTALL), frozenset(("map", "items", "regex"))),
    }
    blindness = _BLIND_ALL
    try:
        for rule in url_map.iter_rules():
            # A redirect_to callable is the app's code, called with the value.
            if type(rule) is not Rule or rule.defaults or rule.alias or callable(rule.redirect_to):
                return _BLIND_NONE
            converters: list[Any] = list(rule._converters.values())
            for converter in converters:
                if not _stock(converter, stock):
                    return _BLIND_NONE
                if type(converter) in (IntegerConverter, FloatConverter):
                    if converter.min is not None or converter.max is not None:
                        return _BLIND_NONE
                elif type(converter) is AnyConverter and _DIGIT_AWARE_REGEX.search(converter.regex):
                    return _BLIND_NONE
            blindness = min(blindness, _literal_blindness(str(rule.rule), _CONVERTER, "<>"))
            if blindness == _BLIND_NONE:
                return blindness
    except AttributeError:  # a werkzeug whose rules this does not know
        return _BLIND_NONE
    return blindness


# Per converter class: the patterns the framework gives it, and the instance attributes
# its __init__ sets.
_Stock = dict[type, tuple[re.Pattern[str], frozenset[str]]]


def _fixed_stock(*classes: tuple[type, str]) -> _Stock:
    """Converter classes whose pattern is a class attribute and which set nothing on an
    instance (Starlette's and Django's)."""
    return {kind: (re.compile(re.escape(regex)), frozenset()) for kind, regex in classes}


def _stock(converter: Any, stock: _Stock) -> bool:
    """Whether ``converter`` is the framework's own as the framework made it: a class of
    ``stock``, with that class's pattern (an app may narrow one, say to refuse leading
    zeros, which reads digits) and no attribute of its own beyond those its ``__init__``
    sets (no method replaced on the instance)."""
    known = stock.get(type(converter))
    if known is None:
        return False
    pattern, attributes = known
    regex = getattr(converter, "regex", None)
    return (
        isinstance(regex, str)
        and pattern.fullmatch(regex) is not None
        and set(vars(converter)) <= attributes
    )


def _has_digit(text: str) -> bool:
    # Wider than ASCII digits (it counts "²" too): a doubt makes the map not blind.
    return any(char.isdigit() for char in text)


def _digit_shape(path: str, blindness: int) -> str | None:
    """``path`` with zeros for the digits the map cannot tell apart; None when there is
    nothing to replace. A percent-encoded path is left to its own match: werkzeug reads
    it as it stands, and an escape such as ``%31`` is not worth reasoning about."""
    if blindness == _BLIND_NONE or "%" in path:
        return None
    if blindness == _BLIND_ALL:
        shape = path.translate(_ZEROS)
        return shape if shape != path else None
    segments = path.split("/")
    changed = False
    for i, segment in enumerate(segments):
        if segment.isascii() and segment.isdigit() and segment.strip("0"):
            segments[i] = "0" * len(segment)
            changed = True
    return "/".join(segments) if changed else None


def _per_shape(known: dict[Any, Resolved], key: Any, match: Callable[[], Resolved]) -> Resolved:
    """The answer kept for a digit shape (``key``), else ``match()``'s, then kept."""
    found = known.get(key)
    if found is None:
        if len(known) >= _CACHE_SIZE:
            known.clear()
        found = known[key] = match()
    return found


def _literal_blindness(template: str, parameter: re.Pattern[str], brackets: str) -> int:
    """How blind to digits the literal text of one route template (outside ``parameter``)
    is: ALL without a digit; SEGMENTS when each digit sits in a segment that is all
    literal and holds a non-digit ("v1"): wherever that text matches, its path segment is
    not all digits, so no digit it reads was changed; else NONE. A bracket left in the
    literal text (``brackets``) may be read otherwise by the framework: NONE."""
    blindness = _BLIND_ALL
    for segment in template.split("/"):
        literal = parameter.sub("", segment)
        if any(char in brackets for char in literal):
            return _BLIND_NONE
        if not _has_digit(literal):
            continue
        if literal != segment or (segment.isascii() and segment.isdigit()):
            return _BLIND_NONE  # a digit beside a parameter, or a segment of digits
        blindness = _BLIND_SEGMENTS
    return blindness


# What in a regex's text can tell one ASCII digit from another: a digit (a literal one, a
# range ending in one, a quantifier such as {4}, an escape such as \x35 or \1), a named
# character (\N{DIGIT FIVE}), a named backreference or a conditional (both read text
# captured earlier). Without them each atom reads a digit through a class that holds all
# ten or none (\d, \w, ., [^/], [a-z], a range around them such as [!-~]).
_DIGIT_AWARE_REGEX: Final = re.compile(r"[0-9]|\\N|\(\?P=|\(\?\(")


def _without_group_names(regex: re.Pattern[str]) -> str:
    """The regex's text without its groups' names, which are not matched text (a name
    such as ``id2`` reads no digit). A name is taken out only where its group's text
    ``(?P<name>`` occurs once, so that nothing escaped or in a class is mistaken for it."""
    text = regex.pattern
    for name in regex.groupindex:
        marker = f"(?P<{name}>"
        if text.count(marker) == 1:
            text = text.replace(marker, "(")
    return text


class _StarletteRoutes:
    """Starlette's route matching, through mounts; the template is built by the same
    code that the ASGI integration uses on a live scope. As for Flask, paths that differ
    only in their digits share one match when no route can tell digits apart (see
    ``_starlette_blindness``); the host plays no part."""

    def __init__(self, app: Any) -> None:
        from starlette.routing import Match

        from headcount.integrations._starlette import StarletteRoutes

        self._router = getattr(app, "router", app)
        self._full = Match.FULL
        self._templates = StarletteRoutes()
        self.blindness = _starlette_blindness(self._router.routes)
        self._by_shape: dict[tuple[str, str], Resolved] = {}

    def __call__(self, method: str, path: str, host: str | None) -> Resolved:
        path = path.split("?", 1)[0]
        if self.blindness == _BLIND_NONE:
            return self._match(method, path)  # load_resolver caches it per path
        shape = _digit_shape(path, self.blindness) or path
        return _per_shape(self._by_shape, (method, shape), lambda: self._match(method, path))

    def _match(self, method: str, path: str) -> Resolved:
        scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path,
            "root_path": "",
            "headers": [],
            "router": self._router,
        }
        routes = self._router.routes
        while True:
            for route in routes:
                match, child = route.matches(scope)
                if match == self._full:
                    break
            else:
                return None, False
            scope.update(child)
            if hasattr(route, "_match") and hasattr(route, "original_router"):
                return self._included(route, scope)
            inner = getattr(route, "routes", None)
            if not inner:
                scope["route"] = route
                return self._templates.route(scope, 200), False
            routes = inner  # a Mount with a router: keep matching inside it

    def _included(self, router: Any, scope: dict[str, Any]) -> Resolved:
        """A FastAPI router kept nested by ``include_router`` (FastAPI 0.137 and later):
        its own matching picks the route and the prefixed path, which the integration
        reads from the same place in the scope as for a live request."""
        for _ in range(16):
            match, child, route, context = router._match(scope)
            if match != self._full or route is None:
                return None, False
            scope.update(child)
            if context is None:  # another included router, one level down
                router = route
                continue
            scope.setdefault("fastapi", {})["effective_route_context"] = context
            scope["route"] = context.original_route
            return self._templates.route(scope, 200), False
        return None, False


def _starlette_blindness(routes: Any) -> int:
    """Whether Starlette's (and FastAPI's) ``routes`` match every path exactly as the same
    path with other digits in place of its digits (one digit for one), as for werkzeug.

    A route's regex must be what ``compile_path`` makes of its path text: the literal text
    escaped, and per parameter a built-in convertor's pattern, which treats all digits
    alike, and whose ``convert`` never refuses what that pattern matched (but for an int's
    length, which stays). So the literal text decides (``_literal_blindness``). Routes are
    read wherever matching or the integration's mount templates reach: below mounts (also
    through middleware) and through FastAPI's included routers, as the routes they match
    with (prefixes joined). A WebSocket route never matches an HTTP request. Any other
    class (Host, an app's own route, router or convertor) makes them not blind."""
    try:
        from starlette.convertors import (
            FloatConvertor,
            IntegerConvertor,
            PathConvertor,
            StringConvertor,
            UUIDConvertor,
        )
        from starlette.routing import PARAM_REGEX, Mount, Route, WebSocketRoute, compile_path

        from headcount.integrations._starlette import _MAX_MOUNT_DEPTH, _child_routes

        # FastAPI's classes, if the app has FastAPI routes (they imported this module).
        fastapi = sys.modules.get("fastapi.routing")
        api_route = getattr(fastapi, "APIRoute", None)
        api_router = getattr(fastapi, "APIRouter", None)
        included = getattr(fastapi, "_IncludedRouter", None)
        effective = getattr(fastapi, "_EffectiveRouteContext", None)
        sockets = (WebSocketRoute, getattr(fastapi, "APIWebSocketRoute", None))
        uuid = "-?".join(f"[0-9a-fA-F]{{{n}}}" for n in (8, 4, 4, 4, 12))
        stock = _fixed_stock(
            (StringConvertor, "[^/]+"), (PathConvertor, ".*"), (IntegerConvertor, "[0-9]+"),
            (FloatConvertor, r"[0-9]+(\.[0-9]+)?"), (UUIDConvertor, uuid),
        )  # fmt: skip

        def compiled(path: Any, route: Any) -> int:
            if not isinstance(path, str) or not all(
                _stock(convertor, stock) for convertor in route.param_convertors.values()
            ):
                return _BLIND_NONE
            regex = compile_path(path)[0]
            if (route.path_regex.pattern, route.path_regex.flags) != (regex.pattern, regex.flags):
                return _BLIND_NONE  # changed after it was made: not read from its text
            return _literal_blindness(path, PARAM_REGEX, "{}")

        def blindness(route: Any, depth: int) -> int:
            kind = type(route)
            if depth >= _MAX_MOUNT_DEPTH:
                return _BLIND_NONE
            if kind in sockets:
                return _BLIND_ALL
            if kind is Route or kind is api_route:
                return compiled(route.path, route)
            if kind is Mount:
                below = _child_routes(route) or ()
                own = compiled(route.path + "/{path:path}", route)
                return min((own, *(blindness(inner, depth + 1) for inner in below)))
            if kind is not included or type(route.original_router) is not api_router:
                return _BLIND_NONE
            found = _BLIND_ALL
            for candidate in route.effective_candidates():
                if type(candidate) is included:
                    found = min(found, blindness(candidate, depth + 1))
                elif type(candidate) is not effective:
                    return _BLIND_NONE
                elif type(candidate.original_route) is api_route:
                    # An APIRoute matches with its context's regex: the prefixed path's.
                    found = min(found, compiled(candidate.path, candidate))
                elif candidate.starlette_route is not None:
                    found = min(found, blindness(candidate.starlette_route, depth + 1))
                else:
                    return _BLIND_NONE  # an app's route class, frontend routes
            return found

        return min((_BLIND_ALL, *(blindness(route, 0) for route in routes)))
    except Exception:  # a version this does not know, or routes that fail to build:
        return _BLIND_NONE  # each path is matched (and fails) as before


class _DjangoRoutes:
    """``django.urls.resolve``, with the Django integration's template and admin rules.
    As for Flask, paths that differ only in their digits share one match when no pattern
    can tell digits apart (see ``_django_blindness``); method and host play no part."""

    def __init__(self, settings_module: str) -> None:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
        _importing(f"--django-settings {settings_module}", settings_module)
        import django

        django.setup()
        from django.urls import Resolver404, get_resolver, get_urlconf

        from headcount.integrations.django._middleware import _is_admin_view, _route_of

        # The resolver that resolve() uses, kept: the one read for blindness answers.
        self._resolver = get_resolver(get_urlconf())
        self._miss = Resolver404
        self._route_of = _route_of
        self._is_admin = _is_admin_view
        self.blindness = _django_blindness(self._resolver)
        self._by_shape: dict[str, Resolved] = {}

    def __call__(self, method: str, path: str, host: str | None) -> Resolved:
        path = path.split("?", 1)[0]
        if self.blindness == _BLIND_NONE:
            return self._match(path)  # load_resolver caches it per path
        shape = _digit_shape(path, self.blindness) or path
        return _per_shape(self._by_shape, shape, lambda: self._match(path))

    def _match(self, path: str) -> Resolved:
        try:
            match = self._resolver.resolve(path)
        except self._miss:
            return None, False
        return self._route_of(_Resolved(match))[0], self._is_admin(match)


def _django_blindness(resolver: Any) -> int:
    """Whether Django's root ``resolver`` resolves every path exactly as the same path
    with other digits in place of its digits (one digit for one), as for werkzeug.

    A ``path()`` route's regex must be what Django makes of its text: the literal text
    escaped, and per parameter a default converter's pattern, which treats all digits
    alike, and whose ``to_python`` never refuses what that pattern matched (but for an
    int's length, which stays). So the literal text decides (``_literal_blindness``). A
    ``re_path()`` regex must hold nothing of ``_DIGIT_AWARE_REGEX``. An i18n prefix is
    the literal language code (the settings' or the active one: resolving activates
    none). Any other class of pattern, resolver or converter (an app's own), or a
    translated (lazy) route makes it not blind."""
    try:
        from django.conf import settings
        from django.urls import URLPattern, URLResolver
        from django.urls.converters import (
            IntConverter,
            PathConverter,
            SlugConverter,
            StringConverter,
            UUIDConverter,
        )
        from django.urls.resolvers import (
            LocalePrefixPattern,
            RegexPattern,
            RoutePattern,
            _route_to_regex,
        )
        from django.utils.translation import get_language

        uuid = "-".join(f"[0-9a-f]{{{n}}}" for n in (8, 4, 4, 4, 12))
        stock = _fixed_stock(
            (IntConverter, "[0-9]+"), (PathConverter, ".+"), (SlugConverter, "[-a-zA-Z0-9_]+"),
            (StringConverter, "[^/]+"), (UUIDConverter, uuid),
        )  # fmt: skip

        def pattern_blindness(pattern: Any) -> int:
            kind = type(pattern)
            if kind is RegexPattern and isinstance(pattern._regex, str):
                blind = _DIGIT_AWARE_REGEX.search(_without_group_names(pattern.regex)) is None
                return _BLIND_ALL if blind else _BLIND_NONE
            if kind is RoutePattern and isinstance(pattern._route, str):
                if not all(_stock(each, stock) for each in pattern.converters.values()):
                    return _BLIND_NONE
                made = _route_to_regex(pattern._route, pattern._is_endpoint)[0]
                if pattern.regex.pattern != made:
                    return _BLIND_NONE  # changed after it was made: not read from its text
                return _literal_blindness(pattern._route, _CONVERTER, "<>")
            if kind is LocalePrefixPattern:
                codes = (settings.LANGUAGE_CODE, get_language() or "")
                return min(_literal_blindness(code + "/", _CONVERTER, "<>") for code in codes)
            return _BLIND_NONE

        def blindness(resolver: Any, depth: int) -> int:
            if depth >= 16:  # include() nested this deep: a cycle, most likely
                return _BLIND_NONE
            found = pattern_blindness(resolver.pattern)
            for entry in resolver.url_patterns:
                if type(entry) is URLPattern:
                    found = min(found, pattern_blindness(entry.pattern))
                elif type(entry) is URLResolver:
                    found = min(found, blindness(entry, depth + 1))
                else:
                    return _BLIND_NONE
            return found

        return blindness(resolver, 0)
    except Exception:  # a version this does not know, or a URLconf that fails to load:
        return _BLIND_NONE  # each path is resolved (and fails) as before


class _Resolved:
    """The two request attributes the Django integration reads a route from."""

    def __init__(self, match: Any) -> None:
        self.resolver_match = match
        self.META: dict[str, Any] = {}
