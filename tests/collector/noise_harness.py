"""A collector on a clock the test moves, for the release model and the attacks on it."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from starlette.testclient import TestClient

from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites
from headcount_collector.retention import run_retention
from headcount_collector.stores import Store, open_store
from tests.collector.conftest import auth, batch_body, read_auth
from tests.conftest import site_file_text

BERLIN = ZoneInfo("Europe/Berlin")  # the "blog" site's zone in tests.conftest
FIRST_DAY = date(2026, 3, 2)


class MovingClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def local_ts(day: date, hour: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN).timestamp())


class NoisedCollector:
    """The real app (ingest, sealing, /v1/stats) with its lifespan running."""

    def __init__(
        self,
        client: TestClient,
        clock: MovingClock,
        store: Store,
        store_url: str,
        settings: Settings,
    ) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self.store = store
        self.store_url = store_url

    def send(self, records: list[dict[str, Any]], at: float) -> dict[str, Any]:
        self.clock.now = at
        response = self.client.post("/v1/ingest", content=batch_body(records), headers=auth())
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def seal_everything(self, at: float) -> None:
        self.clock.now = at
        while self.client.app.state.seal_all():  # type: ignore[attr-defined]
            pass

    def run_retention(self) -> None:
        state = self.client.app.state  # type: ignore[attr-defined]
        run_retention(self.store, list(state.sites), self.settings, self.clock())

    @contextmanager
    def store_connection(self) -> Iterator[Callable[..., object]]:
        """Raw SQL on the store's database, committed at the end: for setting up states
        the app cannot reach any more (an older schema's rows)."""
        if self.store_url.startswith("sqlite:///"):
            with contextlib.closing(
                sqlite3.connect(self.store_url.removeprefix("sqlite:///"))
            ) as conn:
                yield conn.execute
                conn.commit()
        else:
            with psycopg.connect(self.store_url) as pg:
                yield pg.execute

    def stats(self, **params: str) -> dict[str, Any]:
        response = self.client.get("/v1/stats", params=params, headers=read_auth())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@contextmanager
def noised_collector(
    tmp_path: Path,
    *,
    noise: bool = True,
    store_url: str | None = None,
    hourly_days: int = 3660,
    timezone: str = "Europe/Berlin",
) -> Iterator[NoisedCollector]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    sites = tmp_path / "sites.toml"
    # Hourly rows kept long enough that every trial's day can still be asked by the hour.
    sites.write_text(
        site_file_text(hourly_days=hourly_days, keep_days=36600, noise=noise).replace(
            '"Europe/Berlin"', f'"{timezone}"'
        ),
        encoding="utf-8",
    )
    clock = MovingClock(local_ts(FIRST_DAY))
    store_url = store_url or f"sqlite:///{tmp_path / 'noise.sqlite3'}"
    store = open_store(store_url)
    # Sealing runs when the test says so, not on the background loop's schedule.
    settings = Settings(config_path=str(sites), seal_interval=1e6, retention_interval=1e6)
    app = create_app(settings, store, load_sites(sites), clock=clock)
    with TestClient(app) as client:
        if noise:
            # The first sealing pass runs as the app starts; let it set the watermarks
            # (at the clock's start, before any data) so it cannot race the test.
            for _ in range(500):
                if "h" in store.seal_state("blog"):
                    break
                time.sleep(0.01)
        yield NoisedCollector(client, clock, store, store_url, settings)
    store.close()


def day_params(day: date) -> dict[str, str]:
    return {"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()}


def binomial_slack(trials: int) -> float:
    """Three standard deviations of a success rate near 1/2 over ``trials`` trials."""
    return 3 * math.sqrt(0.25 / trials)
