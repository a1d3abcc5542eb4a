"""The import endpoints of a real collector and the release model: imports never land in
sealed hours, and the hours they fill are sealed when the import ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from headcount_collector.release.catalogue import MARGINALS
from headcount_collector.stores.base import ReleasedQuery
from tests._servers import CollectorProcess, start_collector
from tests.collector.conftest import _wipe_postgres, auth, batch_body, pageview
from tests.collector.noise_harness import (
    FIRST_DAY,
    NoisedCollector,
    day_params,
    local_ts,
    noised_collector,
)
from tests.logimport._scenario import SCENARIO, SiteTokens, render, run_import, sites_toml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def noised(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[CollectorProcess, dict[str, SiteTokens]]]:
    text, tokens = sites_toml(["old", "recent"], noise=True)
    site_file = tmp_path / "sites.toml"
    site_file.write_text(text, encoding="utf-8")
    db_url = None
    if request.param == "postgres":
        db_url = request.getfixturevalue("postgres_database")
        _wipe_postgres(db_url)
    server = start_collector(tmp_path, site_file, db_url=db_url)
    try:
        yield server, tokens
    finally:
        server.stop()
        if db_url is not None:
            _wipe_postgres(db_url)


def _state(url: str, token: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/import/state", headers={"authorization": f"Bearer {token}"})


def _sealed_until(url: str, token: str) -> int | None:
    # The sealing loop runs once at start; wait for its watermark.
    deadline = time.monotonic() + 10
    while True:
        value = _state(url, token).json()["sealed_until"]
        if value is not None or time.monotonic() > deadline:
            return value  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_import_endpoints_need_the_write_token(
    noised: tuple[CollectorProcess, dict[str, SiteTokens]],
) -> None:
    server, tokens = noised
    assert _state(server.url, tokens["old"].read).status_code == 401
    assert httpx.get(f"{server.url}/v1/import/state").status_code == 401
    seal = f"{server.url}/v1/import/seal"
    assert httpx.post(seal, json={"until": 3600}).status_code == 401
    auth = {"authorization": f"Bearer {tokens['old'].write}"}
    refused = httpx.post(seal, json={"until": 3601}, headers=auth)
    assert refused.status_code == 422
    assert "start of an hour" in refused.json()["error"]
    assert httpx.post(seal, content=b"{", headers=auth).status_code == 422
    assert httpx.post(seal, json={"until": 3600, "x": 1}, headers=auth).status_code == 422
    state = _state(server.url, tokens["old"].write).json()
    now_hour = int(time.time()) // 3600 * 3600
    assert state["first_hour"] is None
    assert state["newest_hour"] == now_hour
    assert state["oldest_hour"] <= now_hour - 24 * 3600


def test_sealed_hours_take_no_import(
    noised: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = noised
    site = tokens["old"]
    sealed = _sealed_until(server.url, site.write)
    assert sealed is not None
    base = sealed - 48 * 3600
    log = tmp_path / "access.log"
    log.write_text(render("combined", base), encoding="utf-8")
    done = run_import(server.url, site.write, str(log))
    assert done.returncode == 0, done.stderr
    assert f"skipped (already sealed): {len(SCENARIO)}" in done.stderr
    state = _state(server.url, site.write).json()
    assert state["first_hour"] is None
    # Closed is the clock's watermark, the same whether or not anyone visited.
    assert state["closed"] == [[state["oldest_hour"], sealed]]


def test_imported_hours_are_sealed_when_the_import_ends(
    noised: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = noised
    site = tokens["recent"]
    sealed = _sealed_until(server.url, site.write)
    assert sealed is not None
    now_hour = int(time.time()) // 3600 * 3600
    # The hour that just ended is still within the grace window: not sealed yet.
    base = now_hour - 3600
    assert base >= sealed
    lines = [hit for hit in SCENARIO if hit.offset < 3600]
    log = tmp_path / "access.log"
    log.write_text(render("combined", base, tuple(lines)), encoding="utf-8")
    done = run_import(server.url, site.write, str(log))
    assert done.returncode == 0, done.stderr
    assert "late (hours sealed meanwhile; counted in their day only): 0" in done.stderr
    state = _state(server.url, site.write).json()
    assert state["first_hour"] == base
    assert state["sealed_until"] == now_hour
    # Sealed now: the same records again would be stored as late, never change a cell.
    again = run_import(server.url, site.write, str(log))
    assert f"skipped (live data): {len(lines)}" in again.stderr


# Imports into a noised site, on a clock the test moves: what a write-token holder can
# and cannot get released. Nothing the clock has sealed takes an import, whether or not
# it held counts: deciding by its counts would tell whether anyone visited.

BACKFILL_DAY = FIRST_DAY + timedelta(days=3)
NOW = local_ts(FIRST_DAY + timedelta(days=5), 12)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backfill_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'backfill.sqlite3'}"
        return
    db_url: str = request.getfixturevalue("postgres_database")
    _wipe_postgres(db_url)
    yield db_url
    _wipe_postgres(db_url)


@pytest.fixture
def backfill(backfill_url: str, tmp_path: Path) -> Iterator[NoisedCollector]:
    with noised_collector(tmp_path, store_url=backfill_url) as collector:
        yield collector


def _import(
    collector: NoisedCollector, records: list[dict[str, Any]], start: int, until: int
) -> dict[str, Any]:
    """What ``headcount import`` does: send the hours, then ask for the import seal."""
    answer = collector.send(records, NOW)
    seal = collector.client.post(
        "/v1/import/seal", json={"from": start, "until": until}, headers=auth()
    )
    assert seal.status_code == 200, seal.text
    return answer


def _closed(collector: NoisedCollector) -> list[list[int]]:
    response = collector.client.get("/v1/import/state", headers=auth())
    assert response.status_code == 200, response.text
    closed: list[list[int]] = response.json()["closed"]
    return closed


def _hourly(collector: NoisedCollector, day: date) -> dict[str, int]:
    rows = collector.stats(interval="hour", **day_params(day))["totals"]
    return {row["time"][11:13]: row["count"] for row in rows}


def _daily(collector: NoisedCollector, day: date) -> list[int]:
    return [row["count"] for row in collector.stats(interval="day", **day_params(day))["totals"]]


def _released_cells(collector: NoisedCollector) -> list[tuple[Any, ...]]:
    total = next(marginal for marginal in MARGINALS["pageview"] if not marginal.dims)
    query = ReleasedQuery(total, "blog", "h", ((0, 2**62, 0),), per_bucket=True)
    return sorted(collector.store.query_released(query), key=repr)


def test_whether_a_sealed_hour_takes_an_import_never_tells_if_anyone_visited(
    backfill: NoisedCollector,
) -> None:
    # One visitor in 03:00, nobody in 04:00; both hours sealed, the visitor's cell below
    # the threshold. A write-token holder who could import into "empty" hours only, or
    # read which hours are closed, would learn that 03:00 held someone.
    three, four = local_ts(BACKFILL_DAY, 3), local_ts(BACKFILL_DAY, 4)
    backfill.send([pageview(route="/", n=1, hour=three)], three + 600)
    backfill.seal_everything(NOW)
    state = backfill.client.get("/v1/import/state", headers=auth()).json()
    assert _closed(backfill) == [[state["oldest_hour"], state["sealed_until"]]]
    hours, days, cells = (
        _hourly(backfill, BACKFILL_DAY),
        _daily(backfill, BACKFILL_DAY),
        _released_cells(backfill),
    )
    assert "03" not in hours
    records = [pageview(route="/", n=500, hour=three), pageview(route="/", n=500, hour=four)]
    _import(backfill, records, three, four + 3600)
    backfill.seal_everything(NOW + 7200)
    # Both hours answer alike: neither the visitor's hour nor the empty one is released.
    assert _hourly(backfill, BACKFILL_DAY) == hours
    assert _daily(backfill, BACKFILL_DAY) == days
    assert _released_cells(backfill) == cells


def test_one_imported_line_cannot_reopen_a_day_that_held_live_counts(
    backfill: NoisedCollector,
) -> None:
    ten = local_ts(BACKFILL_DAY, 10)
    backfill.send([pageview(route="/", n=300, hour=ten)], ten + 600)
    backfill.seal_everything(NOW)
    hours, days, cells = (
        _hourly(backfill, BACKFILL_DAY),
        _daily(backfill, BACKFILL_DAY),
        _released_cells(backfill),
    )
    assert set(hours) == {"10"}
    day = local_ts(BACKFILL_DAY)
    [(closed_from, closed_until)] = _closed(backfill)
    assert closed_from <= day < local_ts(BACKFILL_DAY + timedelta(days=1)) <= closed_until
    # The attacker's single line in 03:00 (sealed empty) of that day, and one in 10:00.
    three = local_ts(BACKFILL_DAY, 3)
    _import(backfill, [pageview(route="/", n=1, hour=three)], three, three + 3600)
    _import(backfill, [pageview(route="/", n=1, hour=ten)], ten, ten + 3600)
    _import(backfill, [pageview(route="/", n=500, hour=three)], day, day + 86400)
    assert _hourly(backfill, BACKFILL_DAY) == hours
    assert _daily(backfill, BACKFILL_DAY) == days
    assert _released_cells(backfill) == cells


def test_a_live_hour_is_never_released_twice_while_its_day_is_open(
    backfill: NoisedCollector,
) -> None:
    # The hour is released by the clock, its day not yet; an import asks for the hour.
    ten = local_ts(BACKFILL_DAY, 10)
    backfill.send([pageview(route="/", n=300, hour=ten)], ten + 600)
    backfill.seal_everything(ten + 3 * 3600)
    cells = _released_cells(backfill)
    assert len(cells) == 1
    [(closed_from, closed_until)] = _closed(backfill)
    assert closed_from <= ten < ten + 3600 == closed_until
    _import(backfill, [pageview(route="/", n=1, hour=ten)], ten, ten + 3600)
    assert _released_cells(backfill) == cells


def test_an_exact_counts_site_imports_as_before(tmp_path: Path) -> None:
    with noised_collector(tmp_path, noise=False) as exact:
        nine = local_ts(BACKFILL_DAY, 9)
        exact.clock.now = NOW
        assert _closed(exact) == []
        _import(exact, [pageview(route="/", n=50, hour=nine)], nine, nine + 3600)
        assert _hourly(exact, BACKFILL_DAY) == {"09": 50}


def test_hours_older_than_retention_are_refused(backfill: NoisedCollector) -> None:
    backfill.seal_everything(NOW)
    state = backfill.client.get("/v1/import/state", headers=auth()).json()
    too_old = state["oldest_hour"] - 3600
    backfill.clock.now = NOW
    refused = backfill.client.post(
        "/v1/ingest", content=batch_body([pageview(hour=too_old)]), headers=auth()
    )
    assert refused.status_code == 422
