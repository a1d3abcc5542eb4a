"""Fault-test helpers: exact totals straight from the SQLite file, raw-socket HTTP."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

from headcount_collector.tables import TABLES


def stored_total(db_path: Path, site: str = "shop", table: str = "hc_request") -> int:
    """Sum of the hourly counters of ``site`` in ``table``, read from the file itself.

    Hourly rows only: each count may also sit in a daily row, so summing every
    resolution would count it twice.
    """
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        row = conn.execute(
            f"SELECT COALESCE(SUM(n), 0) FROM {table} WHERE site = ? AND res = 'h'", (site,)
        )
        return int(row.fetchone()[0])
    finally:
        conn.close()


def stored_everything(db_path: Path) -> tuple[int, int]:
    """(sum of all hourly counters of every site and table, remembered batch ids)."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        total = sum(
            int(
                conn.execute(
                    f"SELECT COALESCE(SUM(n), 0) FROM {t.name} WHERE res = 'h'"
                ).fetchone()[0]
            )
            for t in TABLES.values()
        )
        batches = int(conn.execute("SELECT COUNT(*) FROM hc_batch").fetchone()[0])
    finally:
        conn.close()
    return total, batches


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def read_response(sock: socket.socket, timeout: float) -> bytes:
    """Whatever the server answers within ``timeout`` (up to the end of the headers)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP/1.1 response, 0 when there is none."""
    if not response.startswith(b"HTTP/1.1 "):
        return 0
    return int(response.split(b" ", 2)[1])
