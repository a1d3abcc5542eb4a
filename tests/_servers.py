"""Real server processes for tests: a free port, spawn, wait until ready, stop.

Built on ``headcount_collector._processes`` (shared with the demo and ``bench/``); adds
the collector as the tests start it. A server that exits early or never gets ready
raises ``ServerFailed`` with its log, which fails the test that needed it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from headcount_collector._processes import (
    ServerFailed,
    ServerProcess,
    accepts_connections,
    answers_http,
    free_port,
    spawn,
)

__all__ = [
    "CollectorProcess",
    "ServerFailed",
    "ServerProcess",
    "accepts_connections",
    "answers_http",
    "free_port",
    "spawn",
    "start_collector",
]


@dataclass
class CollectorProcess(ServerProcess):
    """``headcount-collector serve``, answering at ``url`` and storing at ``db_url``."""

    url: str
    db_path: Path
    db_url: str


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
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "headcount_collector", "serve", "--config", str(site_file),
        "--db", db_url, "--port", str(port), "--workers", str(workers), *extra,
    ]  # fmt: skip
    started = spawn("the collector", argv, tmp_path / log_name)
    server = CollectorProcess(
        started.name,
        started.process,
        started.log_path,
        log_offset=started.log_offset,
        url=url,
        db_path=db_path,
        db_url=db_url,
    )
    server.wait_until(answers_http(f"{url}/healthz", lambda response: response.is_success))
    return server
