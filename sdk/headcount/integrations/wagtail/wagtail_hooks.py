"""Wagtail hooks, found by Wagtail in every installed app's ``wagtail_hooks`` module."""

from __future__ import annotations

from typing import Any

from wagtail import hooks

from headcount._page_route import set_app_route
from headcount.integrations.wagtail._routes import page_route, route_mode

__all__: list[str] = []


@hooks.register("before_serve_page")  # type: ignore[untyped-decorator]
def count_under_page_route(page: Any, request: Any, serve_args: Any, serve_kwargs: Any) -> None:
    """Name the request's route after the page about to be served; serve it unchanged."""
    route = page_route(page, request, route_mode())
    if route is not None:
        # A page's path in the site's page tree: editors' text, not the visitor's.
        set_app_route(request, route)
