"""Wagtail integration: each CMS page counted under its own path (or its page type).

Wagtail serves every page through one catch-all URL pattern, which would count the
whole site as a single route. With this app installed next to the Django integration,
a ``before_serve_page`` hook names the route of each served page::

    INSTALLED_APPS = [..., "headcount.integrations.django", "headcount.integrations.wagtail"]
    HEADCOUNT_WAGTAIL_ROUTES = "path"   # the default; or "page_type"

``"path"`` counts a page under its path within its site (``/``, ``/blog/first-post``);
``"page_type"`` counts it under one template per page model (``/{blogpage}``), for sites
whose page paths should not show up one by one. Paths go through the same identifier
checks as any route. Wagtail's admin is recognised by the Django middleware and never
counted as pageviews.
"""

from headcount.integrations.wagtail._routes import ROUTE_MODES, page_route

__all__ = ["ROUTE_MODES", "page_route"]
