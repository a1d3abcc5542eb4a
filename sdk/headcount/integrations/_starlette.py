"""The full route template of a request routed by Starlette or FastAPI.

Starlette's router leaves the innermost matched route in ``scope["route"]``; its path is
relative to the mount it sits in. The mounts a request went through show only as
concrete path text added to ``scope["root_path"]``, so a mount with a path parameter
(``/orgs/{org}``) is mapped back to its template by walking the router tree once.
Nothing here imports Starlette: an ASGI app without it simply has no ``scope["route"]``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["StarletteRoutes"]

_PARAM = re.compile(r"\{([^{}:]*)(?::([^{}]*))?\}")
# Deep enough for any real app; stops a mount cycle from recursing forever.
_MAX_MOUNT_DEPTH: Final = 16


def _template_regex(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for match in _PARAM.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        parts.append(".+" if match.group(2) == "path" else "[^/]+")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))


class StarletteRoutes:
    """Resolves the template of a routed request; one per middleware instance."""

    def __init__(self) -> None:
        # Per top-level router: every mount prefix as a template, literal ones first.
        self._mounts: dict[int, tuple[Any, list[tuple[re.Pattern[str], str]]]] = {}
        self._lock = threading.Lock()

    def route(self, scope: Mapping[str, Any], status: int) -> str | None:
        route = scope.get("route")
        if route is None:
            # FastAPI's router does not leave a mount in the scope; the root path still
            # shows that one was entered (static files, a mounted app without a router).
            return self._mounted_app(scope, status)
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return None
        path = _included_path(scope, route, path)
        prefix = self._mount_prefix(scope)
        if prefix is None:
            # Mounted somewhere the router tree does not show: never fall back to the
            # concrete path text, which may hold anything a client typed.
            return None
        if hasattr(route, "routes"):
            # The request ended inside a mounted app that has no router of its own
            # (static files, a WSGI app): everything below the mount is one route,
            # and a 404 from it means nothing was there to match.
            if status == 404:
                return None
            return prefix + "/{path}"
        return prefix + path

    def _mounted_app(self, scope: Mapping[str, Any], status: int) -> str | None:
        prefix = self._mount_prefix(scope)
        if not prefix or status == 404:
            return None
        return prefix + "/{path}"

    def _mount_prefix(self, scope: Mapping[str, Any]) -> str | None:
        # `app_root_path` is the root path before any mount; it is only set once a
        # mount has matched.
        outer = scope.get("app_root_path")
        root_path = scope.get("root_path", "")
        if not isinstance(outer, str) or not isinstance(root_path, str):
            return ""
        if not root_path.startswith(outer) or len(root_path) == len(outer):
            return ""
        concrete = root_path[len(outer) :]
        router = scope.get("router")
        if router is None:
            return None
        for pattern, template in self._mount_templates(router):
            if pattern.fullmatch(concrete):
                return template
        return None

    def _mount_templates(self, router: Any) -> list[tuple[re.Pattern[str], str]]:
        cached = self._mounts.get(id(router))
        # The router is kept alongside so that its id cannot be reused while cached.
        if cached is not None and cached[0] is router:
            return cached[1]
        with self._lock:
            found: list[tuple[re.Pattern[str], str]] = []
            _collect_mounts(getattr(router, "routes", ()), "", found, 0)
            # Literal mounts first (/orgs/new before /orgs/{org}), then the longest.
            found.sort(key=lambda item: ("{" in item[1], -len(item[1])))
            self._mounts[id(router)] = (router, found)
            return found


def _collect_mounts(
    routes: Iterable[Any], prefix: str, found: list[tuple[re.Pattern[str], str]], depth: int
) -> None:
    if depth >= _MAX_MOUNT_DEPTH:
        return
    for route in routes:
        path = getattr(route, "path", None)
        # A mount, with a router below it or not (static files, a WSGI app: those are
        # one route, `{path}` below their prefix); a plain route has no `routes`.
        if not isinstance(path, str) or not hasattr(route, "routes"):
            continue
        template = prefix + path.rstrip("/")
        found.append((_template_regex(template), template))
        children = _child_routes(route)
        if children is not None:
            _collect_mounts(children, template, found, depth + 1)


def _child_routes(route: Any) -> Iterable[Any] | None:
    """The routes below a mount, looking through middleware wrapped around its app."""
    routes = getattr(route, "routes", None)
    if routes:
        return routes  # type: ignore[no-any-return]
    app = getattr(route, "app", None)
    for _ in range(_MAX_MOUNT_DEPTH):
        if app is None:
            break
        inner = getattr(app, "routes", None)
        if inner:
            return inner  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
    return routes


def _included_path(scope: Mapping[str, Any], route: Any, path: str) -> str:
    """The path of a FastAPI route including the prefixes of the routers it was included in.

    FastAPI from 0.137 keeps included routers nested and puts the route as declared
    (without the ``include_router(prefix=…)`` prefixes) in ``scope["route"]``; the
    prefixed path lives in its per-request routing context.
    """
    fastapi_state = scope.get("fastapi")
    if not isinstance(fastapi_state, dict):
        return path
    context = fastapi_state.get("effective_route_context")
    if context is None or getattr(context, "original_route", None) is not route:
        return path
    full = getattr(context, "path", None)
    return full if isinstance(full, str) and full else path
