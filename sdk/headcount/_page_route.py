"""Letting an app name the route of a request itself: one page per route on CMS sites.

A CMS serves every page through one catch-all pattern, so the framework's template
(``/<path:slug>``, Wagtail's ``^((?:[\\w\\-]+/)*)$``) counts all pages as one route. Page
paths of a public site are content rather than identifiers, so an app may give the page's
path (or any template) as the route instead. The value goes through the same
normalisation as a framework template: identifier-looking segments still become
``{id}``, and anything unacceptable becomes ``(other)``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Final

from headcount._errors import ConfigurationTypeError

__all__ = ["APP_ROUTE_KEY", "ROUTE_KEY", "chosen_route", "set_app_route", "set_route"]

# Where the route is kept: the WSGI environ (Django's request.META is one) or the ASGI
# scope of the request. A generic WSGI app may put its template here too.
ROUTE_KEY: Final = "headcount.route"
# The route the integrations put there themselves from the app's own text (a router's
# rule, a CMS page's path), so the tracker may remember its coarsening. The route is
# trusted only while it is still that text: anything written over it later is not.
APP_ROUTE_KEY: Final = "headcount.route_from_app"


def set_route(request: Any, route: str) -> None:
    """Count this request under ``route`` instead of the framework's route template.

    ``request`` is the framework's request object (Django ``HttpRequest``, Flask or
    werkzeug ``request``, Starlette or FastAPI ``Request``), a WSGI environ or an ASGI
    scope. ``route`` is a page path such as ``/about/team`` or a template such as
    ``/blog/{slug}``. Call it only once the page is known to exist, so that paths a
    client makes up (a 404) stay under the framework's template.
    """
    if not isinstance(route, str):
        raise ConfigurationTypeError(f"route must be a string, got {type(route).__name__}")
    carrier = _carrier(request)
    carrier[ROUTE_KEY] = route
    # The app may pass its request's own path: that is never remembered.
    carrier.pop(APP_ROUTE_KEY, None)


def set_app_route(request: Any, route: str) -> None:
    """``set_route`` for the integrations, with a route they took from the app's own text
    (a router's rule, a CMS page's path) and never from the request."""
    carrier = _carrier(request)
    carrier[ROUTE_KEY] = route
    carrier[APP_ROUTE_KEY] = route


def chosen_route(carrier: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The route put into ``carrier`` (None when there is none), and whether it is the
    app's own text: only while it is still what the integrations put there."""
    route = carrier.get(ROUTE_KEY)
    if not isinstance(route, str):
        return None, False
    return route, carrier.get(APP_ROUTE_KEY) == route


def _carrier(request: Any) -> MutableMapping[str, Any]:
    for attribute in ("META", "environ", "scope"):
        carrier = getattr(request, attribute, None)
        if isinstance(carrier, MutableMapping):
            return carrier
    if isinstance(request, MutableMapping):
        return request
    raise ConfigurationTypeError(
        "set_route needs a request object, a WSGI environ or an ASGI scope, "
        f"got {type(request).__name__}"
    )
