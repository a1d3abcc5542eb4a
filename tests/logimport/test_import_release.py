"""The import endpoints of a real collector and the release model: imports never land in
sealed hours, and the hours they fill are sealed when the import ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._servers import CollectorProcess, start_collector
from tests.collector.conftest import _wipe_postgres
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


def test_sealed_hours_are_never_filled(
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
    assert _state(server.url, site.write).json()["first_hour"] is None


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
    assert "late: 0" in done.stderr
    state = _state(server.url, site.write).json()
    assert state["first_hour"] == base
    assert state["sealed_until"] == now_hour
    # Sealed now: the same records again would be stored as late, never change a cell.
    again = run_import(server.url, site.write, str(log))
    assert f"skipped (live data): {len(lines)}" in again.stderr
