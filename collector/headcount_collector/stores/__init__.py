"""Storage backends behind one interface: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from headcount_collector.stores.base import (
    CounterQuery,
    RetentionResult,
    Store,
)

__all__ = ["CounterQuery", "RetentionResult", "Store", "open_store"]


def open_store(db_url: str) -> Store:
    """The store for a ``sqlite:///path`` or ``postgresql://…`` URL."""
    if db_url.startswith("sqlite://"):
        from headcount_collector.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(db_url)
    if db_url.startswith(("postgresql://", "postgres://")):
        from headcount_collector.stores.postgres import PostgresStore

        return PostgresStore.from_url(db_url)
    raise ValueError(f"unsupported database URL scheme in {db_url.split(':', 1)[0]!r}")
