"""Shared fixtures: site files with known tokens, stores, in-process and real collectors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from headcount_collector.config import token_digest

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@dataclass
class CollectorProcess:
    url: str
    db_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    db_url: str

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_collector(
    tmp_path: Path,
    site_file: Path,
    *,
    workers: int = 1,
    db_url: str | None = None,
    port: int | None = None,
    extra: tuple[str, ...] = ("--access-log",),
    log_name: str = "collector.log",
) -> CollectorProcess:
    """Start ``headcount-collector serve`` as a real process and wait until it answers."""
    port = port or free_port()
    db_path = tmp_path / "headcount.sqlite3"
    db_url = db_url or f"sqlite:///{db_path}"
    log_path = tmp_path / log_name
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "headcount_collector",
                "serve",
                "--config",
                str(site_file),
                "--db",
                db_url,
                "--port",
                str(port),
                "--workers",
                str(workers),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"collector exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return CollectorProcess(url, db_path, log_path, process, db_url)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"collector did not start:\n{log_path.read_text()}")


@pytest.fixture
def collector_server(tmp_path: Path, site_file: Path) -> Iterator[CollectorProcess]:
    server = start_collector(tmp_path, site_file)
    try:
        yield server
    finally:
        server.stop()
