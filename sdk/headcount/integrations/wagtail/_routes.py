"""The route a Wagtail page is counted under."""

from __future__ import annotations

from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["ROUTE_MODES", "SETTING", "page_route", "route_mode"]

SETTING: Final = "HEADCOUNT_WAGTAIL_ROUTES"
ROUTE_MODES: Final = ("path", "page_type")


def route_mode() -> str:
    """``settings.HEADCOUNT_WAGTAIL_ROUTES``, checked: ``"path"`` unless set."""
    mode = getattr(settings, SETTING, "path")
    if mode not in ROUTE_MODES:
        raise ImproperlyConfigured(f"{SETTING} must be one of {', '.join(ROUTE_MODES)}")
    return str(mode)


def page_route(page: Any, request: Any, mode: str = "path") -> str | None:
    """The route for ``page`` served to ``request``: its path within its site, or a
    ``{model}`` template per page type. None when Wagtail cannot give the page a URL
    (then the framework's template stays)."""
    if mode == "page_type":
        model = page.specific_class or type(page)
        return "/{" + str(model._meta.model_name) + "}"
    parts = page.get_url_parts(request=request)
    if parts is None:
        return None
    path = parts[2]
    return path if isinstance(path, str) and path.startswith("/") else None
