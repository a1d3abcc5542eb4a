"""Headcount: privacy-first analytics for server-rendered Python apps.

Requests are coarsened inside the app (route template, UTC hour, latency range, status
class, referrer domain) and counted in memory; only those counts are ever sent.

The names below are loaded on first use (PEP 562), so that ``from headcount import wire``,
which is all the collector needs, loads neither the Tracker nor httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from headcount._version import __version__

if TYPE_CHECKING:
    from headcount._errors import ConfigurationError, ConfigurationWarning, HeadcountError
    from headcount._page_route import set_route
    from headcount._request import RequestInfo
    from headcount._routes import generalize_path, normalize_route
    from headcount._settings import TrackerSettings
    from headcount._stats import TrackerStats
    from headcount._tracker import Tracker

__all__ = [
    "ConfigurationError",
    "ConfigurationWarning",
    "HeadcountError",
    "RequestInfo",
    "Tracker",
    "TrackerSettings",
    "TrackerStats",
    "__version__",
    "generalize_path",
    "normalize_route",
    "set_route",
]

# Each exported name and the private module that defines it.
_LAZY: Final = {
    "ConfigurationError": "headcount._errors",
    "ConfigurationWarning": "headcount._errors",
    "HeadcountError": "headcount._errors",
    "RequestInfo": "headcount._request",
    "Tracker": "headcount._tracker",
    "TrackerSettings": "headcount._settings",
    "TrackerStats": "headcount._stats",
    "generalize_path": "headcount._routes",
    "normalize_route": "headcount._routes",
    "set_route": "headcount._page_route",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'headcount' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # Cached as a real attribute: the next lookup no longer reaches this function.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
