"""The Headcount collector: strict ingest of coarse counts, hourly storage, suppressed queries.

    from headcount_collector import Settings, create_app, load_sites, open_store

    settings = Settings(config_path="sites.toml", db_url="sqlite:///headcount.sqlite3")
    app = create_app(settings, open_store(settings.db_url))

Everything else lives in modules named for one concept each: ``ingest`` (limits,
decoding, validation), ``groupcommit``, ``stores`` (one module per backend), ``query``
and ``suppression``, ``privacy``, ``cli``.
"""

from typing import TYPE_CHECKING

from headcount_collector.config import Settings, SiteRegistry, load_sites
from headcount_collector.errors import (
    CollectorError,
    ConfigError,
    IngestRejected,
    QueryRejected,
    StoreUnavailable,
)
from headcount_collector.stores import Store, open_store

if TYPE_CHECKING:
    from headcount_collector.app import create_app

__version__ = "0.1.0"

__all__ = [
    "CollectorError",
    "ConfigError",
    "IngestRejected",
    "QueryRejected",
    "Settings",
    "SiteRegistry",
    "Store",
    "StoreUnavailable",
    "__version__",
    "create_app",
    "load_sites",
    "open_store",
]


def __getattr__(name: str) -> object:
    # The web app (and Starlette) load on first use only: the CLI's maintenance commands
    # (purge, export, backup) never need them.
    if name == "create_app":
        from headcount_collector.app import create_app

        return create_app
    raise AttributeError(f"module 'headcount_collector' has no attribute {name!r}")
