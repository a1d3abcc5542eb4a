"""The collector's public facade is small and exact; it builds a working app."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

import headcount_collector


def test_facade_is_exact() -> None:
    assert sorted(headcount_collector.__all__) == [
        "CollectorError", "ConfigError", "IngestRejected", "QueryRejected", "Settings",
        "SiteRegistry", "Store", "StoreUnavailable", "__version__", "create_app",
        "load_sites", "open_store",
    ]  # fmt: skip
    for name in headcount_collector.__all__:
        assert hasattr(headcount_collector, name)
    for error in ("ConfigError", "IngestRejected", "QueryRejected", "StoreUnavailable"):
        assert issubclass(getattr(headcount_collector, error), headcount_collector.CollectorError)


def test_the_documented_three_lines_build_a_serving_app(tmp_path: Path, site_file: Path) -> None:
    settings = headcount_collector.Settings(
        config_path=str(site_file), db_url=f"sqlite:///{tmp_path / 'h.sqlite3'}"
    )
    app = headcount_collector.create_app(settings, headcount_collector.open_store(settings.db_url))
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
