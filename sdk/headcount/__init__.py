"""Headcount: privacy-first analytics for server-rendered Python apps.

Requests are coarsened inside the app (route template, UTC hour, latency range, status
class, referrer domain) and counted in memory; only those counts are ever sent.
"""

from headcount._errors import ConfigurationError, ConfigurationWarning, HeadcountError
from headcount._page_route import set_route
from headcount._request import RequestInfo
from headcount._routes import generalize_path, normalize_route
from headcount._stats import TrackerStats
from headcount._tracker import Tracker
from headcount._version import __version__

__all__ = [
    "ConfigurationError",
    "ConfigurationWarning",
    "HeadcountError",
    "RequestInfo",
    "Tracker",
    "TrackerStats",
    "__version__",
    "generalize_path",
    "normalize_route",
    "set_route",
]
