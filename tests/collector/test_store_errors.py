"""Storage trouble answers 503 with Retry-After, never a 2xx, and stores nothing half-way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites
from headcount_collector.stores import open_store
from headcount_collector.stores.sqlite import SQLiteStore
from tests.collector.conftest import auth, batch_body, pageview, sqlite_snapshot


def test_locked_database_answers_503_then_recovers(tmp_path: Path, site_file: Path) -> None:
    db = tmp_path / "locked.sqlite3"
    store = SQLiteStore(db, busy_timeout=0.2)
    app = create_app(Settings(config_path=str(site_file)), store, load_sites(site_file))
    body = batch_body([pageview(n=3)])
    with TestClient(app) as client:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            response = client.post("/v1/ingest", content=body, headers=auth())
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) > 0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert sqlite_snapshot(db) == (0, 0)
        retry = client.post("/v1/ingest", content=body, headers=auth())
        assert retry.status_code == 202
        assert sqlite_snapshot(db) == (3, 1)


def test_sqlite_url_options() -> None:
    store = open_store("sqlite:///x.sqlite3?busy_timeout=2.5")
    assert isinstance(store, SQLiteStore)
    assert store.busy_timeout == 2.5
    assert str(store.path) == "x.sqlite3"
    assert str(SQLiteStore.from_url("sqlite:////tmp/abs.sqlite3").path) == "/tmp/abs.sqlite3"
    with pytest.raises(ValueError, match="unknown sqlite URL option"):
        open_store("sqlite:///x.sqlite3?journal=off")
    with pytest.raises(ValueError, match="number of seconds"):
        open_store("sqlite:///x.sqlite3?busy_timeout=soon")
    with pytest.raises(ValueError, match="needs a file path"):
        open_store("sqlite://")
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_store("mysql://localhost/x")
