"""Collector fixtures: every store backend, an in-process app, a shared real server."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, TypedDict

import msgspec
import pytest
from starlette.testclient import TestClient

from headcount import wire
from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites
from headcount_collector.stores import Store, open_store
from headcount_collector.stores.sqlite import SQLiteStore
from headcount_collector.tables import TABLES
from tests._servers import CollectorProcess, start_collector
from tests.conftest import READ_TOKEN, WRITE_TOKEN, site_file_text

STORE_KINDS = ["sqlite", "postgres"]

# The JSON body of ``GET /v1/stats`` as tests read it (README, "GET /v1/stats"); a row
# holds its time fields, its ``by`` dimensions and a count.
StatsBody = TypedDict(
    "StatsBody",
    {
        "site": str,
        "metric": str,
        "from": str,
        "to": str,
        "interval": str,
        "by": list[str],
        "privacy": dict[str, Any],
        "k": int,
        "withheld": int,
        "rows": list[dict[str, Any]],
        "totals": list[dict[str, Any]],
        "derived": dict[str, float | None],
        "notes": list[str],
    },
    total=False,
)


def current_hour() -> int:
    return int(time.time()) // 3600 * 3600


def batch_body(records: list[dict[str, Any]], batch_id: str | None = None, **extra: Any) -> bytes:
    return msgspec.json.encode(
        {
            "batch_id": batch_id or secrets.token_hex(16),
            "sender": "tests",
            "sender_version": "1.0",
            "records": records,
            **extra,
        }
    )


def pageview(
    route: str = "/", referrer: str = "(direct)", n: int = 1, **fields: Any
) -> dict[str, Any]:
    return {
        "kind": "pageview",
        "hour": fields.pop("hour", current_hour()),
        "route": route,
        "referrer": referrer,
        "entry": fields.pop("entry", referrer != "(internal)"),
        "n": n,
        **fields,
    }


def request_record(route: str = "/", n: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "request",
        "hour": fields.pop("hour", current_hour()),
        "route": route,
        "method": fields.pop("method", "GET"),
        "status": fields.pop("status", "2xx"),
        "latency": fields.pop("latency", wire.LATENCY_LABELS[1]),
        "n": n,
        **fields,
    }


def auth(token: str = WRITE_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def read_auth(token: str = READ_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    base = request.getfixturevalue("postgres_database")
    yield base
    _wipe_postgres(base)


def _wipe_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # Every table the collector made, by its prefix: a table a new schema version
        # adds can then never carry one test's rows into the next.
        tables = conn.execute(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename LIKE 'hc\\_%'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    opened.migrate()
    yield opened
    opened.close()


def stored_snapshot(store: SQLiteStore) -> tuple[int, int]:
    """(sum of every counter, number of remembered batch ids): 'nothing stored' checks."""
    total = 0
    from headcount_collector.stores.base import CounterQuery

    for table in TABLES.values():
        for site in ("blog", "shop"):
            rows = store.query(
                CounterQuery(table=table, site=site, start=0, end=2**40, interval="total")
            )
            total += sum(int(r[-1] or 0) for r in rows)
    with closing(sqlite3.connect(store.path)) as conn:
        (batches,) = conn.execute("SELECT COUNT(*) FROM hc_batch").fetchone()
    return total, int(batches)


@pytest.fixture
def make_client(tmp_path: Path, store: Store) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(k: int = 5, clock: Callable[[], float] = time.time, **settings: Any) -> TestClient:
        path = tmp_path / f"sites-{len(clients)}.toml"
        path.write_text(site_file_text(k=k), encoding="utf-8")
        app = create_app(
            Settings(config_path=str(path), **settings), store, load_sites(path), clock=clock
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One real collector (CLI + uvicorn) shared by the tests that only add to it."""
    tmp = tmp_path_factory.mktemp("shared-collector")
    site_path = tmp / "sites.toml"
    site_path.write_text(site_file_text(), encoding="utf-8")
    server = start_collector(tmp, site_path)
    yield server
    server.stop()


def sqlite_snapshot(db_path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db_path)
    try:
        total = daily = rolled = 0
        for t in TABLES.values():
            total += conn.execute(
                f"SELECT COALESCE(SUM(n), 0) FROM {t.name} WHERE res = 'h'"
            ).fetchone()[0]
            daily += conn.execute(
                f"SELECT COALESCE(SUM(n), 0) FROM {t.name} WHERE res = 'd'"
            ).fetchone()[0]
            rolled += conn.execute(
                f"SELECT COALESCE(SUM(c.n), 0) FROM {t.name} c "
                "LEFT JOIN hc_rollup r ON r.site = c.site "
                "WHERE c.res = 'h' AND (r.rolled_until IS NULL OR c.bucket < r.rolled_until)"
            ).fetchone()[0]
        batches = conn.execute("SELECT COUNT(*) FROM hc_batch").fetchone()[0]
    finally:
        conn.close()
    # Every hourly count of a rolled-up day is also in its day's row (until hourly rows
    # expire), and no count of a later day is (it is rolled up once its day has ended).
    assert daily == rolled, (daily, rolled, total)
    return int(total), int(batches)
