"""Retention: roll-up of old hours into days, deletion of expired days, bytes really gone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from headcount_collector.config import load_sites
from headcount_collector.stores import Store
from headcount_collector.stores.sqlite import SQLiteStore
from tests.collector.test_query import NOW, pv, seed, stats
from tests.conftest import site_file_text

BERLIN = ZoneInfo("Europe/Berlin")
CANARY = "purged-canary-qxzv"


def berlin_hour(y: int, m: int, d: int, h: int) -> int:
    return int(datetime(y, m, d, h, tzinfo=BERLIN).timestamp())


def seed_history(store: Store) -> None:
    seed(
        store,
        "blog",
        [
            # 40 days old: past hourly_days (30), kept as a daily row.
            ("pageview", berlin_hour(2026, 10, 16, 9), pv("/old"), 10),
            ("pageview", berlin_hour(2026, 10, 16, 23), pv("/old"), 5),
            ("pageview", berlin_hour(2026, 10, 17, 0), pv("/old"), 7),
            # Three years old: past keep_days (760), deleted.
            ("pageview", berlin_hour(2023, 11, 1, 12), pv(f"/{CANARY}"), 9),
            # Recent: untouched.
            ("pageview", berlin_hour(2026, 11, 24, 10), pv("/new"), 6),
        ],
    )


def test_roll_up_and_expiry(
    store: Store, make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    seed_history(store)
    (tmp_path / "s.toml").write_text(site_file_text(), encoding="utf-8")
    site = load_sites(tmp_path / "s.toml").get("blog")
    assert site is not None
    result = store.apply_retention(site, int(NOW), dedupe_seconds=7 * 86400)
    assert result.hourly_rolled_up == 4  # the ancient hour is rolled up, then expires
    assert result.daily_deleted == 1
    client = make_client(clock=lambda: NOW)
    days = stats(client, by="route", **{"from": "2026-10-16", "to": "2026-10-18"})
    assert days["rows"] == [
        {"time": "2026-10-16T00:00:00+02:00", "route": "/old", "count": 15},
        {"time": "2026-10-17T00:00:00+02:00", "route": "/old", "count": 7},
    ]
    hours = stats(client, interval="hour", **{"from": "2026-10-16", "to": "2026-10-18"})
    assert hours["rows"] == []
    assert "rolled up" in hours["notes"][0]
    recent = stats(
        client, interval="total", by="route", **{"from": "2026-11-24", "to": "2026-11-25"}
    )
    assert recent["rows"] == [{"route": "/new", "count": 6}]
    ancient = stats(client, interval="total", **{"from": "2023-11-01", "to": "2023-11-02"})
    assert ancient["rows"] == []
    # Idempotent: a second run finds nothing to do and changes nothing.
    again = store.apply_retention(site, int(NOW), dedupe_seconds=7 * 86400)
    assert (again.hourly_rolled_up, again.daily_deleted) == (0, 0)
    assert stats(client, by="route", **{"from": "2026-10-16", "to": "2026-10-18"}) == days


def test_purged_bytes_are_gone_from_database_and_wal(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    store = SQLiteStore(db)
    store.migrate()
    seed_history(store)
    files = [db, Path(f"{db}-wal")]
    assert any(CANARY.encode() in f.read_bytes() for f in files if f.exists())
    (tmp_path / "s.toml").write_text(site_file_text(), encoding="utf-8")
    site = load_sites(tmp_path / "s.toml").get("blog")
    assert site is not None
    store.apply_retention(site, int(NOW), dedupe_seconds=7 * 86400)
    store.close()
    for f in files:
        if f.exists():
            assert CANARY.encode() not in f.read_bytes(), f


@pytest.mark.slow
def test_purge_command(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    store = SQLiteStore(db)
    store.migrate()
    seed_history(store)
    store.close()
    config = tmp_path / "s.toml"
    config.write_text(site_file_text(), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "headcount_collector",
            "purge",
            "--config",
            str(config),
            "--db",
            f"sqlite:///{db}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert CANARY.encode() not in db.read_bytes()
