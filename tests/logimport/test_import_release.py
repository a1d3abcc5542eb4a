"""The import endpoints of a real collector and the release model: imports never land in
sealed hours, and the hours they fill are sealed when the import ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from headcount_collector.release.catalogue import MARGINALS, Resolution
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


def _sealed_until(url: str, token: str) -> int:
    """The site's watermark, once the sealing loop (it runs as the collector starts)
    has set it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        value = _state(url, token).json()["sealed_until"]
        if value is not None:
            return int(value)
        time.sleep(0.1)
    raise AssertionError("the collector never set the site's watermark")


def _write_log(tmp_path: Path, text: str) -> str:
    log = tmp_path / "access.log"
    log.write_text(text, encoding="utf-8")
    return str(log)


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
    watermark = _sealed_until(server.url, tokens["old"].write)
    malformed = httpx.post(seal, content=b"{", headers=auth)
    assert malformed.status_code == 422
    assert malformed.json() == {
        "error": 'body is not valid JSON; expected {"until": hour, "from": hour (optional)}',
        "path": "$",
    }
    # A field's name may be the identifier being refused: never echoed back.
    unknown = httpx.post(seal, json={"until": 3600, "jane.doe@example.com": 1}, headers=auth)
    assert unknown.status_code == 422
    assert "jane.doe" not in unknown.text
    assert unknown.json()["path"] == "$"
    wrong_type = httpx.post(seal, json={"until": "noon"}, headers=auth)
    assert wrong_type.status_code == 422
    assert wrong_type.json()["path"] == "$.until"
    assert "noon" not in wrong_type.text
    oversized = httpx.post(seal, content=b'{"until": 3600' + b" " * 2000 + b"}", headers=auth)
    assert oversized.status_code == 413
    # None of them sealed anything.
    assert _sealed_until(server.url, tokens["old"].write) == watermark
    hour_before = int(time.time()) // 3600 * 3600
    state = _state(server.url, tokens["old"].write).json()
    now_hour = int(time.time()) // 3600 * 3600
    assert state["first_hour"] is None
    # The request may be answered on either side of an hour's start.
    assert state["newest_hour"] in (hour_before, now_hour)
    assert state["oldest_hour"] <= now_hour - 24 * 3600


def test_history_before_the_site_began_takes_one_import(
    noised: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = noised
    site = tokens["old"]
    sealed = _sealed_until(server.url, site.write)
    state = _state(server.url, site.write).json()
    # A new site's origin is where the clock began sealing it: nothing before was released.
    assert state["origin"] == sealed
    base = sealed - 48 * 3600
    log = _write_log(tmp_path, render("combined", base))
    done = run_import(server.url, site.write, log)
    assert done.returncode == 0, done.stderr
    assert "records accepted: 17" in done.stderr
    assert "late (hours sealed meanwhile; counted in their day only): 0" in done.stderr
    state = _state(server.url, site.write).json()
    assert state["first_hour"] == base
    # Released once: the (UTC) days the import touched are closed, every hour of them,
    # whether or not a line fell in it.
    hours = sorted({base + hit.offset // 3600 * 3600 for hit in SCENARIO})
    days = [hours[0] // 86400 * 86400, hours[-1] // 86400 * 86400 + 86400]
    live = [[sealed, state["sealed_until"]]] if state["sealed_until"] > sealed else []
    assert state["closed"] == [days, *live]
    again = run_import(server.url, site.write, log)
    assert f"skipped (hours already stored): {len(SCENARIO)}" in again.stderr
    # Even past the importer's own rule, the collector takes nothing more into them.
    late = httpx.post(
        f"{server.url}/v1/import/ingest",
        content=batch_body([pageview(hour=hours[0], n=500)]),
        headers=auth(site.write),
    )
    assert late.status_code == 202, late.text
    assert late.json()["late"] == 500


def test_rerunning_an_import_that_stopped_before_its_seal_releases_its_history(
    noised: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = noised
    site = tokens["old"]
    sealed = _sealed_until(server.url, site.write)
    base = sealed - 72 * 3600
    # What an import that died after sending, before asking for its seal, leaves behind.
    sent = httpx.post(
        f"{server.url}/v1/import/ingest",
        content=batch_body([pageview(hour=base, n=3)]),
        headers=auth(site.write),
    )
    assert sent.status_code == 202, sent.text
    day = [base // 86400 * 86400, base // 86400 * 86400 + 86400]
    assert day not in _state(server.url, site.write).json()["closed"]
    log = _write_log(tmp_path, render("combined", base))
    done = run_import(server.url, site.write, log)
    assert done.returncode == 0, done.stderr
    assert f"skipped (hours already stored): {len(SCENARIO)}" in done.stderr
    # Nothing sent again, but the history is sealed now (UTC days).
    assert day in _state(server.url, site.write).json()["closed"]


def test_weeks_of_history_are_closed_from_the_first_day_to_the_last(
    noised: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = noised
    site = tokens["old"]
    sealed = _sealed_until(server.url, site.write)
    oldest, newest = sealed - 20 * 86400, sealed - 48 * 3600
    log = _write_log(tmp_path, render("combined", oldest) + render("combined", newest))
    done = run_import(server.url, site.write, log)
    assert done.returncode == 0, done.stderr
    assert f"records accepted: {2 * 17}" in done.stderr
    closed = _state(server.url, site.write).json()["closed"]
    # Every UTC day from the oldest line's to the newest's, the ones between included. The
    # scenario's lines run 77 minutes past its start: one that starts at 23:00 UTC (the
    # watermark's hour, so between midnight and 2 UTC) ends on the next day.
    last_line = newest + max(hit.offset for hit in SCENARIO)
    assert closed[0] == [oldest // 86400 * 86400, last_line // 86400 * 86400 + 86400]


def test_imported_hours_are_sealed_when_the_import_ends(
    noised: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = noised
    site = tokens["recent"]
    sealed = _sealed_until(server.url, site.write)
    now_hour = int(time.time()) // 3600 * 3600
    # The hour that just ended is still within the grace window: not sealed yet.
    base = now_hour - 3600
    assert base >= sealed
    lines = [hit for hit in SCENARIO if hit.offset < 3600]
    log = _write_log(tmp_path, render("combined", base, tuple(lines)))
    # A history import leaves an hour this recent to the live counts still on their way.
    history = run_import(server.url, site.write, log)
    assert history.returncode == 0, history.stderr
    assert f"skipped (live counts may still arrive): {len(lines)}" in history.stderr
    # A site counted from its logs alone (--append) imports it as soon as it ends.
    done = run_import(server.url, site.write, "--append", log)
    assert done.returncode == 0, done.stderr
    assert "late (hours sealed meanwhile; counted in their day only): 0" in done.stderr
    state = _state(server.url, site.write).json()
    assert state["first_hour"] == base
    assert state["sealed_until"] == now_hour
    # Sealed now: the same records again would be stored as late, never change a cell.
    again = run_import(server.url, site.write, "--append", log)
    assert f"skipped (hours with data): {len(lines)}" in again.stderr


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


def _released_cells(
    collector: NoisedCollector, resolution: Resolution = "h"
) -> list[tuple[Any, ...]]:
    total = next(marginal for marginal in MARGINALS["pageview"] if not marginal.dims)
    query = ReleasedQuery(total, "blog", resolution, ((0, 2**62, 0),), per_bucket=True)
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
    # From the start of the origin's own day: the clock sealed that day, so its hours
    # before the origin are closed too (they could never reach it).
    assert _closed(backfill) == [[local_ts(FIRST_DAY - timedelta(days=1)), state["sealed_until"]]]
    assert state["origin"] == local_ts(FIRST_DAY) - 2 * 3600
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
        "/v1/import/ingest", content=batch_body([pageview(hour=too_old)]), headers=auth()
    )
    assert refused.status_code == 422
    assert refused.json()["path"] == "$.records[0].hour"
    taken = backfill.client.post(
        "/v1/import/ingest", content=batch_body([pageview(hour=too_old + 3600)]), headers=auth()
    )
    assert taken.status_code == 202, taken.text


# History before the origin: where the clock began sealing the site. Nothing there was
# released, so each bucket can be released once, by an import's seal.

HISTORY_DAY = FIRST_DAY - timedelta(days=20)


def _origin(collector: NoisedCollector) -> int:
    origin: int = collector.client.get("/v1/import/state", headers=auth()).json()["origin"]
    return origin


def _import_history(
    collector: NoisedCollector, records: list[dict[str, Any]], start: int, until: int
) -> dict[str, Any]:
    collector.clock.now = NOW
    sent = collector.client.post("/v1/import/ingest", content=batch_body(records), headers=auth())
    assert sent.status_code == 202, sent.text
    seal = collector.client.post(
        "/v1/import/seal", json={"from": start, "until": until}, headers=auth()
    )
    assert seal.status_code == 200, seal.text
    answer: dict[str, Any] = sent.json()
    return answer


def test_history_before_the_origin_is_released_once_by_the_import(
    backfill: NoisedCollector,
) -> None:
    backfill.seal_everything(NOW)
    origin = _origin(backfill)
    assert origin <= local_ts(FIRST_DAY)
    nine, ten = local_ts(HISTORY_DAY, 9), local_ts(HISTORY_DAY, 10)
    day = local_ts(HISTORY_DAY)
    assert _hourly(backfill, HISTORY_DAY) == {}
    assert _daily(backfill, HISTORY_DAY) == []
    answer = _import_history(
        backfill,
        [pageview(route="/", n=900, hour=nine), pageview(route="/docs", n=700, hour=ten)],
        day,
        day + 86400,
    )
    assert answer == {"accepted": 2}  # nothing late: these hours were never released
    hourly = _hourly(backfill, HISTORY_DAY)
    assert set(hourly) == {"09", "10"}
    # Noisy, at the site's budget: far closer than this to the truth.
    assert abs(hourly["09"] - 900) < 200
    assert abs(hourly["10"] - 700) < 200
    [daily] = _daily(backfill, HISTORY_DAY)
    assert abs(daily - 1600) < 200
    closed = _closed(backfill)
    # The whole range asked for is closed, the hours that held nothing included.
    assert [day, day + 86400] in closed
    cells = _released_cells(backfill)
    # A second import of the same hours is late: nothing released changes.
    again = _import_history(backfill, [pageview(route="/", n=5000, hour=nine)], day, day + 86400)
    assert again["late"] == 5000
    assert _released_cells(backfill) == cells
    assert _hourly(backfill, HISTORY_DAY) == hourly
    assert _daily(backfill, HISTORY_DAY) == [daily]


def test_which_history_hours_take_an_import_never_depends_on_counts(
    backfill: NoisedCollector,
) -> None:
    # A write-token holder imports one record into 03:00 and nothing into 04:00, then
    # asks for both hours: both are closed alike, and neither takes a second import.
    # Had only the hours that held counts been closed, which hours could still take an
    # import would tell whether anyone was counted in them.
    backfill.seal_everything(NOW)
    three, four = local_ts(HISTORY_DAY, 3), local_ts(HISTORY_DAY, 4)
    _import_history(backfill, [pageview(route="/", n=1, hour=three)], three, four + 3600)
    # The whole local day goes with them (see the test below).
    assert [local_ts(HISTORY_DAY), local_ts(HISTORY_DAY + timedelta(days=1))] in _closed(backfill)
    cells = _released_cells(backfill)
    hours = _hourly(backfill, HISTORY_DAY)
    padded = _import_history(
        backfill,
        [pageview(route="/", n=500, hour=three), pageview(route="/", n=500, hour=four)],
        three,
        four + 3600,
    )
    assert padded["late"] == 1000
    assert _released_cells(backfill) == cells
    assert _hourly(backfill, HISTORY_DAY) == hours


def test_a_site_sealed_before_origins_were_kept_takes_no_history(
    backfill: NoisedCollector,
) -> None:
    # When sealing began is unknown (a database from before schema version 6), no hour
    # before the watermark can be told apart from one that was released: none is open.
    backfill.seal_everything(NOW)
    with backfill.store_connection() as execute:
        execute("UPDATE hc_seal SET origin = NULL")
    state = backfill.client.get("/v1/import/state", headers=auth()).json()
    assert state["origin"] is None
    assert state["closed"] == [[state["oldest_hour"], state["sealed_until"]]]
    nine = local_ts(HISTORY_DAY, 9)
    answer = _import_history(backfill, [pageview(route="/", n=900, hour=nine)], nine, nine + 3600)
    assert answer["late"] == 900
    assert _hourly(backfill, HISTORY_DAY) == {}


def test_an_exact_counts_site_imports_history_beyond_the_batch_id_window(
    tmp_path: Path,
) -> None:
    with noised_collector(tmp_path, noise=False) as exact:
        exact.clock.now = NOW
        old_hour = local_ts(HISTORY_DAY, 9)
        assert NOW - old_hour > 14 * 86400
        body = batch_body([pageview(route="/", n=50, hour=old_hour)])
        # Live ingest takes hours back to its batch-id memory only.
        live = exact.client.post("/v1/ingest", content=body, headers=auth())
        assert live.status_code == 422
        sent = exact.client.post("/v1/import/ingest", content=body, headers=auth())
        assert sent.status_code == 202, sent.text
        assert _hourly(exact, HISTORY_DAY) == {"09": 50}
        # Weeks later, after retention has run, the same batch is still recognised.
        exact.clock.now = NOW + 30 * 86400
        exact.run_retention()
        again = exact.client.post("/v1/import/ingest", content=body, headers=auth())
        assert again.status_code == 200, again.text
        assert again.json() == {"duplicate": True}
        assert _hourly(exact, HISTORY_DAY) == {"09": 50}


def test_an_imported_day_holds_every_hour_released_in_it(backfill: NoisedCollector) -> None:
    # The newest log first (from 14:00), then an older one reaching into the same day:
    # the day was claimed with all its hours, so the older log's hours of it are closed
    # rather than released by the hour and missing from the day.
    backfill.seal_everything(NOW)
    fourteen, nine = local_ts(HISTORY_DAY, 14), local_ts(HISTORY_DAY, 9)
    _import_history(
        backfill, [pageview(route="/", n=800, hour=fourteen)], fourteen, fourteen + 3600
    )
    hourly, daily = _hourly(backfill, HISTORY_DAY), _daily(backfill, HISTORY_DAY)
    assert set(hourly) == {"14"}
    assert len(daily) == 1
    earlier = HISTORY_DAY - timedelta(days=1)
    older = _import_history(
        backfill,
        [
            pageview(route="/", n=600, hour=nine),
            pageview(route="/", n=400, hour=local_ts(earlier, 9)),
        ],
        local_ts(earlier, 9),
        nine + 3600,
    )
    assert older["late"] == 600
    assert _hourly(backfill, HISTORY_DAY) == hourly
    assert _daily(backfill, HISTORY_DAY) == daily
    assert set(_hourly(backfill, earlier)) == {"09"}


def test_history_stays_closed_when_retention_forgets_it_and_then_grows(
    backfill_url: str, tmp_path: Path
) -> None:
    # Retention drops the released cells; were the claims dropped too, raising
    # hourly_days afterwards would let the same history in and out a second time.
    with noised_collector(tmp_path, store_url=backfill_url, hourly_days=30) as short:
        short.seal_everything(NOW)
        day = FIRST_DAY - timedelta(days=5)
        nine = local_ts(day, 9)
        _import_history(short, [pageview(route="/", n=900, hour=nine)], nine, nine + 3600)
        assert "09" in _hourly(short, day)
        short.clock.now = NOW + 40 * 86400
        short.run_retention()
        assert [local_ts(day), local_ts(day + timedelta(days=1))] not in _closed(short)
    with noised_collector(tmp_path, store_url=backfill_url, hourly_days=3660) as longer:
        longer.clock.now = NOW + 40 * 86400
        assert [local_ts(day), local_ts(day + timedelta(days=1))] in _closed(longer)
        again = _import_history(longer, [pageview(route="/", n=900, hour=nine)], nine, nine + 3600)
        assert again["late"] == 900
        assert _hourly(longer, day) == {}


def test_a_new_time_zone_cannot_release_imported_history_again(
    backfill_url: str, tmp_path: Path
) -> None:
    # Days are claimed at local midnights; after the site moves to another zone, its
    # days start elsewhere. A day overlapping hours already released is never released.
    day = FIRST_DAY - timedelta(days=8)
    nine = local_ts(day, 9)
    record = [pageview(route="/", n=900, hour=nine)]
    with noised_collector(tmp_path, store_url=backfill_url) as berlin:
        berlin.seal_everything(NOW)
        _import_history(berlin, record, nine, nine + 3600)
        hourly, daily = _released_cells(berlin, "h"), _released_cells(berlin, "d")
        assert hourly
        assert daily
    with noised_collector(tmp_path, store_url=backfill_url, timezone="America/New_York") as moved:
        again = _import_history(moved, record, nine - 86400, nine + 86400)
        assert again["late"] == 900
        assert _released_cells(moved, "h") == hourly
        assert _released_cells(moved, "d") == daily


def test_history_in_a_half_hour_time_zone_is_released_day_by_day(
    backfill_url: str, tmp_path: Path
) -> None:
    # Local midnight falls at half past an hour: each day holds the hours that start in
    # it, and no hour is shared with the day before (which would close every later day).
    with noised_collector(tmp_path, store_url=backfill_url, timezone="Asia/Kolkata") as india:
        india.seal_everything(NOW)
        first = FIRST_DAY - timedelta(days=10)
        kolkata = ZoneInfo("Asia/Kolkata")
        days = [first + timedelta(days=i) for i in range(4)]
        noon = [
            int(datetime(d.year, d.month, d.day, 12, tzinfo=kolkata).timestamp()) // 3600 * 3600
            for d in days
        ]
        _import_history(
            india,
            [pageview(route="/", n=700, hour=hour) for hour in noon],
            noon[0] - 12 * 3600,
            noon[-1] + 12 * 3600,
        )
        daily = [
            row["count"]
            for day in days
            for row in india.stats(interval="day", **day_params(day))["totals"]
        ]
        assert len(daily) == 4
        assert all(abs(count - 700) < 200 for count in daily)
