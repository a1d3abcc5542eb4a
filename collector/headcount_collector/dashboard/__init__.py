"""The dashboard: server-rendered pages and SVG charts, with no JavaScript.

It reads only through the query layer behind ``/v1/stats`` (``parse_stats_query`` and
``run_stats_query``), so it can never show a number the API would not release.
"""

from __future__ import annotations

from ._views import CSP, dashboard_routes

__all__ = ["CSP", "dashboard_routes"]
