"""Shared fixtures: site files with known tokens, PostgreSQL, a real collector
(``tests/_servers.py`` starts it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from headcount_collector.config import token_digest
from tests._servers import CollectorProcess, start_collector

# Speed is the benchmarks' business; a per-example deadline only measures how busy the
# shared machine is.
settings.register_profile("headcount", deadline=None)
settings.load_profile("headcount")

WRITE_TOKEN = "hcw_test-write-token-blog-0001"
READ_TOKEN = "hcr_test-read-token-blog-0001"
SHOP_WRITE_TOKEN = "hcw_test-write-token-shop-0002"
SHOP_READ_TOKEN = "hcr_test-read-token-shop-0002"


def site_file_text(
    k: int = 5, hourly_days: int = 30, keep_days: int = 760, *, noise: bool = False
) -> str:
    """Two sites. Most tests check that counting is exact, so by default both opt out of
    noise (``exact_counts``); tests of the release model pass ``noise=True``."""
    exact = "" if noise else "exact_counts = true\n"
    return f"""
[[sites]]
id = "blog"
timezone = "Europe/Berlin"
write_token_sha256 = "{token_digest(WRITE_TOKEN).hex()}"
read_token_sha256 = "{token_digest(READ_TOKEN).hex()}"
k = {k}
hourly_days = {hourly_days}
keep_days = {keep_days}
{exact}[[sites.events]]
name = "signup"
props = {{ plan = ["free", "pro"] }}
[[sites.events]]
name = "download"

[[sites]]
id = "shop"
timezone = "UTC"
write_token_sha256 = "{token_digest(SHOP_WRITE_TOKEN).hex()}"
read_token_sha256 = "{token_digest(SHOP_READ_TOKEN).hex()}"
k = 1
{exact}"""


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(site_file_text(), encoding="utf-8")
    return path


POSTGRES_URL = os.environ.get(
    "HEADCOUNT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A scratch database for this test session; fails (never skips) when unreachable."""
    psycopg = pytest.importorskip("psycopg")
    name = f"headcount_test_{os.getpid()}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def collector_server(tmp_path: Path, site_file: Path) -> Iterator[CollectorProcess]:
    server = start_collector(tmp_path, site_file)
    try:
        yield server
    finally:
        server.stop()
