"""Headcount: privacy-first analytics for server-rendered Python apps."""

from headcount._request import RequestInfo

__version__ = "0.1.0"

__all__ = ["RequestInfo", "__version__"]
