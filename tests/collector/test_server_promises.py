"""Promises of the README about the collector, held to what an operator finds: the access
log names route templates, never paths, and a purge leaves nothing in SQLite's WAL."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from headcount_collector.config import load_sites
from headcount_collector.stores.sqlite import SQLiteStore
from tests._servers import CollectorProcess, start_collector
from tests.collector.test_query import NOW
from tests.collector.test_retention import CANARY, seed_history
from tests.conftest import WRITE_TOKEN, site_file_text

# --- the access log shows the route template, never the raw path ----------------------


@pytest.mark.slow
def test_the_access_log_shows_route_templates_never_raw_paths(
    collector_server: CollectorProcess,
) -> None:
    canaries = ("alice@example.com", "bob@example.com")
    matched = httpx.get(f"{collector_server.url}/privacy/alice@example.com")
    unmatched = httpx.get(f"{collector_server.url}/nosuch/bob@example.com")
    assert (matched.status_code, unmatched.status_code) == (404, 404)

    def answered() -> list[str]:
        return [
            line
            for line in collector_server.log_text().splitlines()
            if "headcount_collector.access: GET" in line and "/healthz" not in line
        ]

    # The access line is written just after the answer is sent: wait for both.
    deadline = time.monotonic() + 5
    while len(answered()) < 2:
        assert time.monotonic() < deadline, collector_server.log_text()
        time.sleep(0.05)
    lines = answered()
    assert len(lines) == 2, lines
    assert any("GET /privacy/{site} 404" in line for line in lines), lines
    assert any("GET (unmatched) 404" in line for line in lines), lines
    log = collector_server.log_text()
    for canary in (*canaries, "/nosuch"):
        assert canary not in log, canary


# --- a purge checkpoints and truncates SQLite's WAL -----------------------------------


def test_a_purge_leaves_no_purged_value_in_the_wal_while_the_store_is_open(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.sqlite3"
    wal = Path(f"{db}-wal")
    store = SQLiteStore(db)
    try:
        store.migrate()
        seed_history(store)
        # The value to be purged was written through the WAL, and is still there.
        assert CANARY.encode() in wal.read_bytes()
        (tmp_path / "s.toml").write_text(site_file_text(), encoding="utf-8")
        site = load_sites(tmp_path / "s.toml").get("blog")
        assert site is not None
        result = store.apply_retention(site, int(NOW), dedupe_seconds=7 * 86400)
        assert result.daily_deleted == 1
        # Before close() (which would checkpoint anyway): the WAL was folded back into the
        # database file and truncated, and neither file holds the purged value.
        assert not wal.exists() or wal.stat().st_size == 0
        for held in (db, wal):
            if held.exists():
                assert CANARY.encode() not in held.read_bytes(), held
    finally:
        store.close()


# --- a client hanging up mid-form leaves no traceback in the log -----------------------


@pytest.mark.slow
def test_a_client_hanging_up_mid_form_leaves_no_traceback(
    collector_server: CollectorProcess,
) -> None:
    """A stranger who announces a body and hangs up halfway must not be able to fill the
    operator's log with errors (a review got a full traceback per request)."""
    address = urlsplit(collector_server.url)
    for path in ("/dashboard/sign-in", "/v1/import/seal"):
        with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Origin: http://127.0.0.1\r\nAuthorization: Bearer "
                f"{WRITE_TOKEN}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 100\r\n\r\ntoken=abc".encode()
            )
            time.sleep(0.2)
    # The collector notices the hang-ups; then it still answers, and its log holds no
    # error about them.
    deadline = time.monotonic() + 5
    while "POST /dashboard/sign-in" not in collector_server.log_text():
        assert time.monotonic() < deadline, collector_server.log_text()
        time.sleep(0.05)
    assert httpx.get(f"{collector_server.url}/healthz").status_code == 200
    log = collector_server.log_text()
    assert "Traceback" not in log, log
    assert "ERROR" not in log, log


# --- every answer is hardened against sniffing, framing and a forged Host --------------


def _every_kind_of_answer(server: CollectorProcess) -> dict[str, httpx.Response]:
    from tests.conftest import READ_TOKEN

    url = server.url
    bearer = {"authorization": f"Bearer {READ_TOKEN}"}
    return {
        "privacy": httpx.get(f"{url}/privacy"),
        "site privacy, unknown site": httpx.get(f"{url}/privacy/no-such-site"),
        "openapi": httpx.get(f"{url}/openapi.json"),
        "schema": httpx.get(f"{url}/v1/schema"),
        "stats": httpx.get(f"{url}/v1/stats", headers=bearer),
        "stats, wrong token": httpx.get(f"{url}/v1/stats", headers={"authorization": "Bearer x"}),
        "stats, bad query": httpx.get(f"{url}/v1/stats?interval=fortnight", headers=bearer),
        "ingest, no token": httpx.post(f"{url}/v1/ingest", content=b"{}"),
        "ingest, bad body": httpx.post(
            f"{url}/v1/ingest",
            content=b"{",
            headers={"authorization": f"Bearer {WRITE_TOKEN}", "content-type": "application/json"},
        ),
        "unknown path": httpx.get(f"{url}/nosuch"),
        "healthz": httpx.get(f"{url}/healthz"),
    }


def test_every_answer_forbids_sniffing_and_framing_and_loads_nothing(
    shared_server: CollectorProcess,
) -> None:
    answers = _every_kind_of_answer(shared_server)
    assert answers["stats, bad query"].status_code == 400
    assert answers["ingest, bad body"].status_code == 400
    for name, response in answers.items():
        assert response.headers.get("x-content-type-options") == "nosniff", name
        policy = response.headers.get("content-security-policy", "")
        directives = dict(
            (*part.split(None, 1), "")[:2] for part in policy.split(";") if part.strip()
        )
        assert directives.get("default-src") == "'none'", (name, policy)
        assert directives.get("frame-ancestors") == "'none'", (name, policy)
        assert "unsafe-inline" not in policy, (name, policy)
        assert "unsafe-eval" not in policy, (name, policy)


def test_the_privacy_pages_allow_only_their_own_style(shared_server: CollectorProcess) -> None:
    import base64
    import hashlib
    import re

    for path in ("/privacy", "/privacy/no-such-site"):
        response = httpx.get(f"{shared_server.url}{path}")
        styles = re.findall(r"<style>(.*?)</style>", response.text, re.S)
        assert len(styles) == 1, path
        digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
        policy = response.headers["content-security-policy"]
        assert f"style-src 'sha256-{digest}'" in policy, (path, policy)
        assert "script-src" not in policy  # scripts fall back to default-src 'none'


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/privacy/", "/privacy"),
        ("/v1/stats/?interval=day", "/v1/stats?interval=day"),
        ("/dashboard/blog/", "/dashboard/blog"),
        ("/openapi.json/", "/openapi.json"),
        # A decoded "?" or "%" in the path stays in the path, encoded as it came.
        ("/privacy/a%3Fx=1/", "/privacy/a%3Fx=1"),
        ("/privacy/%252F/", "/privacy/%252F"),
        ("/privacy/caf%C3%A9/?q=%C3%A9", "/privacy/caf%C3%A9?q=%C3%A9"),
        ("/dashboard/", None),  # no such page either way
        ("//attacker.example/", None),
    ],
)
def test_a_slash_redirect_names_only_the_path_whatever_the_host(
    shared_server: CollectorProcess, path: str, location: str | None
) -> None:
    response = httpx.get(
        f"{shared_server.url}{path}", headers={"host": "attacker.example"}, follow_redirects=False
    )
    if location is None:
        assert response.status_code == 404
        assert "location" not in response.headers
    else:
        assert response.status_code == 307
        assert response.headers["location"] == location
    assert "attacker.example" not in response.text


def test_a_slash_redirect_under_a_mount_prefix_names_the_prefix_once(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    mounted = TestClient(client.app, root_path="/hc")
    response = mounted.get("/hc/privacy/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/hc/privacy"


def test_a_swapped_token_is_named_as_such_and_never_echoed(client: TestClient) -> None:
    from tests.conftest import READ_TOKEN

    stats = client.get("/v1/stats", headers={"authorization": f"Bearer {WRITE_TOKEN}"})
    assert stats.status_code == 401
    assert "that is a write token" in stats.json()["error"]
    schema = client.get("/v1/schema", headers={"authorization": f"Bearer {WRITE_TOKEN}"})
    assert schema.status_code == 401
    assert "that is a write token" in schema.json()["error"]
    ingest = client.post(
        "/v1/ingest",
        content=b"{}",
        headers={"authorization": f"Bearer {READ_TOKEN}", "content-type": "application/json"},
    )
    assert ingest.status_code == 401
    assert "that is a read token" in ingest.json()["error"]
    for response in (stats, schema, ingest):
        assert WRITE_TOKEN not in response.text
        assert READ_TOKEN not in response.text
    # Any other wrong token keeps the plain answer.
    other = client.get("/v1/stats", headers={"authorization": "Bearer hcr_nope"})
    assert other.json()["error"] == "missing or wrong read token"


def _started(tmp_path: Path, *extra: str) -> tuple[CollectorProcess, int]:
    """A real collector of the test sites, with ``extra`` flags, and its port."""
    site = tmp_path / "sites.toml"
    site.write_text(site_file_text(), encoding="utf-8")
    server = start_collector(tmp_path, site, extra=extra)
    port = urlsplit(server.url).port
    assert port is not None
    return server, port


# --- an upgrade request writes nothing of the client into the log -----------------------


@pytest.mark.slow
@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_websocket_upgrade_logs_no_address_query_string_or_header(
    tmp_path: Path, level: str
) -> None:
    """uvicorn logs each WebSocket attempt with the client's address and query string (and
    at debug every header, the write token among them); the collector serves none."""
    server, port = _started(tmp_path, "--log-level", level)
    try:
        request = (
            "GET /v1/ingest?email=jane.doe@example.com&token=qxkzpmrtvb HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Authorization: Bearer {WRITE_TOKEN}\r\nUser-Agent: Canary-Agent/1.0\r\n\r\n"
        )
        answers = []
        addresses = []  # each client's address as uvicorn would write it
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                addresses.append(f"127.0.0.1:{conn.getsockname()[1]}")
                conn.sendall(request.encode())
                answers.append(conn.recv(4096).split(b"\r\n", 1)[0])
        # Answered as the plain GET it also is: the ingest endpoint takes only POST.
        assert answers == [b"HTTP/1.1 405 Method Not Allowed"] * 3, answers
        assert httpx.get(f"{server.url}/healthz").is_success  # the log is written by now
    finally:
        server.stop()
    log = server.log_text()
    for canary in (
        *addresses,
        "jane.doe",
        "qxkzpmrtvb",
        WRITE_TOKEN,
        "Canary-Agent",
        "WebSocket",
        "Unsupported upgrade",
    ):
        assert canary not in log, (canary, log)


# --- malformed requests cannot flood the log -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("level", ["warning", "debug"])
def test_malformed_requests_are_refused_and_logged_once_a_minute(
    tmp_path: Path, level: str
) -> None:
    """uvicorn writes a warning per malformed request, so a stranger without a token wrote
    5,000 lines a second into the log at any level (a review). Each is still answered 400
    (431 for oversized headers); the log gets the first, then a count once a minute."""
    server, port = _started(tmp_path, "--log-level", level)
    try:
        answers = set()
        for index in range(300):
            garbage = b"\x00\r\n\r\n" if index % 2 else b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 70
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(garbage + b"\r\n")
                answers.add(conn.recv(4096).split(b"\r\n", 1)[0])
        assert answers == {
            b"HTTP/1.1 400 Bad Request",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        }, answers
        assert httpx.get(f"{server.url}/healthz").is_success  # the log is written by now
    finally:
        server.stop()
    lines = [line for line in server.log_text().splitlines() if "Invalid HTTP request" in line]
    assert len(lines) == 1, lines
    assert "(1 refused since the last such line" in lines[0]


@pytest.mark.slow
def test_a_client_resetting_mid_answer_leaves_no_traceback(tmp_path: Path) -> None:
    """Hundreds of pipelined requests for a public document, then a reset: each answer
    written after the reset raised in the transport, and uvicorn logged a 50-line
    traceback for it (a review wrote 600 lines a second this way). Now a connection with
    more than 32 requests waiting is dropped, and nothing is written to a closed one."""
    import struct

    server, port = _started(tmp_path)
    try:
        pipelined = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 800
        for _ in range(30):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.connect(("127.0.0.1", port))
            sock.sendall(pipelined)
            time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(0.5)
        assert httpx.get(f"{server.url}/healthz").is_success
    finally:
        server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert "Exception in ASGI application" not in log
