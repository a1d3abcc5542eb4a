"""The Django middleware: times each request and reports it to the app's Tracker."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from headcount._log import RateLimitedLog
from headcount.integrations._common import chosen_route, environ_request_info
from headcount.integrations.django.apps import LABEL

if TYPE_CHECKING:
    from headcount import Tracker
    from headcount.integrations.django.apps import HeadcountConfig

__all__ = ["HeadcountMiddleware"]

logger = logging.getLogger("headcount.integrations.django")

# Django's request and response types are left as Any: the project does not type-check
# against Django stubs, and only a few documented attributes are read.
GetResponse = Callable[[Any], Any]


class HeadcountMiddleware:
    """Counts every request that passes through, under WSGI or ASGI.

    A streamed response (``StreamingHttpResponse``, ``FileResponse``) is counted when
    the server closes it, so its time includes sending the body.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        if not apps.is_installed("headcount.integrations.django"):
            raise ImproperlyConfigured(
                "HeadcountMiddleware needs 'headcount.integrations.django' in INSTALLED_APPS"
            )
        self.get_response = get_response
        self._config: HeadcountConfig = apps.get_app_config(LABEL)
        self._is_async = iscoroutinefunction(get_response)
        self._checked_servers = False
        # At most one line a minute per kind of problem: a request shape that always
        # fails must not flood the app's log.
        self.log = RateLimitedLog()
        # Whether a view is an admin's, per (view, route): a URL conf has few of them.
        self._admin_views: dict[tuple[object, str], bool] = {}
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._is_async:
            return self._acall(request)
        started = perf_counter()
        try:
            response = self.get_response(request)
        except Exception:
            # Django turns view errors into 500 responses before they reach here;
            # this only sees errors from handlers that re-raise.
            self._record(request, 500, started, None)
            raise
        self._count(request, response, started)
        return response

    async def _acall(self, request: Any) -> Any:
        started = perf_counter()
        get_response: Callable[[Any], Awaitable[Any]] = self.get_response
        try:
            response = await get_response(request)
        except Exception:
            self._record(request, 500, started, None)
            raise
        self._count(request, response, started)
        return response

    def _count(self, request: Any, response: Any, started: float) -> None:
        status: int = response.status_code
        content_type: str | None = response.get("Content-Type")
        if response.streaming:
            closers = getattr(response, "_resource_closers", None)
            if isinstance(closers, list):
                # Django calls these from response.close(), which the server calls
                # once the body is sent (also for FileResponse under wsgi.file_wrapper).
                closers.append(lambda: self._record(request, status, started, content_type))
                return
        self._record(request, status, started, content_type)

    def _record(self, request: Any, status: int, started: float, content_type: str | None) -> None:
        elapsed = perf_counter() - started
        try:
            route, from_app = _route_of(request)
            info = environ_request_info(
                request.META, route, status, elapsed, content_type, from_app
            )
            match = getattr(request, "resolver_match", None)
            info.excluded = match is not None and self._is_admin(match)
        except Exception:
            # Describing the request must never break serving it.
            self.log.exception("describe-django", "headcount could not describe a Django request")
            return
        tracker = self._config.tracker
        if not self._checked_servers:
            self._checked_servers = True
            self._check_server(request, tracker)
        tracker.record_request(info)

    def _check_server(self, request: Any, tracker: Tracker) -> None:
        """Once, from the first request: what the server means for visits and for the
        last counts."""
        if getattr(request, "scope", None) is None:
            # WSGI: the server says whether other processes serve the app too (Django's
            # ASGI requests always say so, whatever the server does).
            if request.META.get("wsgi.multiprocess"):
                tracker.served_by_several_processes()
        elif not self._config.lifespan_wrapped and tracker.settings.enabled:
            logger.warning(
                "headcount: Django is served over ASGI without HeadcountLifespan, so a "
                "server that stops its workers without exit hooks (uvicorn) loses the "
                "counts not sent yet; in asgi.py: application = "
                "HeadcountLifespan(get_asgi_application()), from "
                "headcount.integrations.django"
            )

    def _is_admin(self, match: Any) -> bool:
        try:
            key = (match.func, match.route)
            known = self._admin_views.get(key)
        except TypeError:  # a view object that cannot be hashed: decide every time
            return _is_admin_view(match)
        if known is None:
            if len(self._admin_views) >= _MAX_KNOWN_VIEWS:
                self._admin_views.clear()
            known = self._admin_views[key] = _is_admin_view(match)
        return known


def _route_of(request: Any) -> tuple[str | None, bool]:
    """The matched URL pattern, include() prefixes joined, with a leading slash, and
    whether it is the app's own text (the resolver's, or the Wagtail hook's page path).

    ``path()`` routes come as ``users/<int:pk>/``; ``re_path()`` routes as the joined
    regexes, ``^blog/(?P<slug>[-\\w]+)/$``. The slash goes after a leading ``^`` so the
    text is still recognised as a regex when it is normalised.
    """
    chosen, from_app = chosen_route(request.META)
    if chosen is not None:
        # Set by the view (headcount.set_route: a CMS page's own path), taken on trust
        # only while it is what the Wagtail hook put there.
        return chosen, from_app
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if not isinstance(route, str):
        return None, False
    if route.startswith("^"):
        return (route if route.startswith("^/") else "^/" + route[1:]), True
    return (route if route.startswith("/") else "/" + route), True


# Back-office views by what they are, wherever the project mounts them: every Django
# AdminSite (custom ones included) registers its URLs under the application namespace
# "admin"; Wagtail names its admin URLs and namespaces "wagtailadmin…".
_ADMIN_APP_NAMES = frozenset({"admin"})
_ADMIN_NAME_PREFIX = "wagtailadmin"
_ADMIN_MODULES = ("django.contrib.admin.", "wagtail.admin.")
_MAX_KNOWN_VIEWS = 4096


def _is_admin_view(match: Any) -> bool:
    """True when ``match`` (a ResolverMatch) routes to Django's or Wagtail's admin."""
    app_names = getattr(match, "app_names", ())
    if _ADMIN_APP_NAMES.intersection(app_names):
        return True
    names = (getattr(match, "url_name", None) or "", *app_names)
    if any(name.startswith(_ADMIN_NAME_PREFIX) for name in names):
        return True
    view = getattr(match, "func", None)
    module = getattr(getattr(view, "view_class", view), "__module__", None) or ""
    return module.startswith(_ADMIN_MODULES)
