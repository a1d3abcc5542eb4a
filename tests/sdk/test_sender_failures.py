"""Failures an operator must hear about: a refused token, a wrong endpoint, counts lost
at shutdown. Each used to pass silently (issue 13, silent failures 3, 5 and 6)."""

from __future__ import annotations

import logging
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from headcount import ConfigurationError, Tracker
from headcount_collector.config import token_digest
from headcount_collector.tables import TABLES
from tests._servers import start_collector
from tests.conftest import WRITE_TOKEN, site_file_text
from tests.sdk.conftest import page
from tests.sdk.test_processes import stored_total
from tests.sdk.test_sender import FakeCollector, make_tracker, record


def headcount_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "headcount"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_keeps_counts_within_bounds_and_says_so_loudly(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """401 and 403 alike (the README): the counts are kept and one error says so."""
    token_fixed = False

    def collector_side(attempt: int, batch: object) -> httpx.Response | None:
        return None if token_fixed else httpx.Response(status, json={"error": "wrong token"})

    collector = FakeCollector(collector_side)
    tracker = make_tracker(collector, max_buffer_batches=3)
    with caplog.at_level(logging.WARNING, logger="headcount"):
        for round_number in range(5):
            record(tracker, 2, route=f"/r{'abcde'[round_number]}")
            assert tracker.flush(1) is False
    stats = tracker.stats()
    # Kept, within the existing bound: the two oldest batches made room (and are counted).
    assert (stats.buffered, stats.dropped, stats.sent) == (3, 2, 0)
    errors = [r for r in headcount_lines(caplog) if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # loud, and still rate-limited
    message = errors[0].getMessage()
    assert f"refused the write token (HTTP {status})" in message
    assert "http://collector.test" in message  # names the collector...
    assert "write-token" not in message  # ...never the token itself

    token_fixed = True
    assert tracker.shutdown(5) is True
    assert collector.routes() == {"/rc", "/rd", "/re"}
    assert collector.total() == 6


def test_counts_lost_at_shutdown_are_logged_once_with_how_many_and_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down(attempt: int, batch: object) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    tracker = make_tracker(FakeCollector(down))
    record(tracker, 3, route="/a")
    record(tracker, 2, route="/b")
    with caplog.at_level(logging.WARNING, logger="headcount"):
        assert tracker.shutdown(1) is False
    lost = [r.getMessage() for r in headcount_lines(caplog) if "lost at shutdown" in r.getMessage()]
    assert len(lost) == 1
    # Two distinct keys (/a, /b) were counted: two count records in one batch.
    assert "2 count records in 1 unsent batches are lost at shutdown" in lost[0]
    assert "unreachable (ConnectError)" in lost[0]


def test_nothing_is_logged_as_lost_when_everything_was_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = FakeCollector()
    tracker = make_tracker(collector)
    record(tracker, 3)
    with caplog.at_level(logging.WARNING, logger="headcount"):
        assert tracker.shutdown(2) is True
    assert headcount_lines(caplog) == []
    assert collector.total() == 3


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://collector.test/v1/ingest",
        "http://collector.test/v1/ingest/",
        "http://collector.test/",
    ],
)
def test_an_endpoint_given_with_the_ingest_path_posts_to_the_ingest_path(endpoint: str) -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(202, json={"accepted": 1})

    tracker = Tracker(
        endpoint, "write-token", transport=httpx.MockTransport(handle), flush_interval=86400
    )
    tracker.record_request(page())
    assert tracker.flush(2) is True
    assert seen == ["http://collector.test/v1/ingest"]
    tracker.shutdown(1)


def test_a_404_returns_false_and_logs_the_url_it_posted_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404, text="Not Found"))
    tracker = Tracker(
        "http://user:hunter2@collector.test/stats",
        "write-token",
        transport=transport,
        flush_interval=86400,
    )
    tracker.record_request(page())
    with caplog.at_level(logging.WARNING, logger="headcount"):
        assert tracker.flush(2) is False
    (line,) = [r.getMessage() for r in headcount_lines(caplog)]
    assert "HTTP 404 from POST http://collector.test/stats/v1/ingest" in line
    assert "hunter2" not in line
    assert "hunter2" not in repr(tracker)
    tracker.shutdown(1)


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://admin:hunter2@collector.test/",
        "https://admin:hunter2@collector.test/?x=1",
        "https://admin:hunter2@/path",
        "http://admin:hunter2@[::1/",
    ],
)
def test_a_bad_endpoint_is_refused_without_echoing_its_password(endpoint: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Tracker(endpoint, "write-token")
    assert "hunter2" not in str(refused.value)
    assert "admin" not in str(refused.value)


@pytest.mark.slow
def test_fixing_a_refused_token_on_the_collector_loses_nothing(tmp_path: Path) -> None:
    sites = tmp_path / "sites.toml"
    # The operator pasted the wrong digest for the blog's write token.
    sites.write_text(
        site_file_text().replace(token_digest(WRITE_TOKEN).hex(), "ab" * 32, 1), encoding="utf-8"
    )
    server = start_collector(tmp_path, sites)
    tracker = Tracker(
        server.url, WRITE_TOKEN, flush_interval=86400, backoff_initial=0.05, backoff_max=0.1
    )
    try:
        for _ in range(7):
            tracker.record_request(page(route="/kept"))
        assert tracker.flush(5) is False
        assert (tracker.stats().buffered, tracker.stats().dropped) == (1, 0)
        # ... fixes it, and reloads the running collector.
        sites.write_text(site_file_text(), encoding="utf-8")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not tracker.flush(2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stored_total(server.db_path, TABLES["pageview"].name) == 7
        assert tracker.stats().dropped == 0
    finally:
        tracker.shutdown(1)
        server.stop()


@contextmanager
def _tls_collector(tmp_path: Path, names: str = "IP:127.0.0.1") -> Iterator[tuple[str, Path]]:
    """A stand-in collector over HTTPS with a self-signed certificate for ``names``:
    its URL and the certificate, while it serves."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", f"subjectAltName={names}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    class Accepting(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = b'{"accepted": 1}'
            self.send_response(202)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Accepting)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _warnings_of_a_failed_flush(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    tracker = Tracker(url, WRITE_TOKEN, flush_interval=86400, backoff_initial=0.01)
    with caplog.at_level(logging.WARNING, logger="headcount"):
        tracker.record_request(page())
        assert tracker.flush(2) is False
    tracker.shutdown(0.5)
    return [r.getMessage() for r in headcount_lines(caplog)]


def test_an_untrusted_certificate_is_named_as_such_not_as_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _tls_collector(tmp_path) as (url, cert):
        messages = _warnings_of_a_failed_flush(url, caplog)
        assert any("cannot verify the collector's TLS certificate" in m for m in messages)
        assert any("SSL_CERT_FILE" in m for m in messages)
        assert not any("unreachable" in m for m in messages)
        # Trusting the CA, as the message says, is enough.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = Tracker(url, WRITE_TOKEN, flush_interval=86400)
        trusted.record_request(page())
        assert trusted.flush(5) is True
        trusted.shutdown(1)


def test_a_certificate_for_another_name_is_named_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _tls_collector(tmp_path, names="DNS:stats.example.org") as (url, cert):
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted, but for another name
        messages = _warnings_of_a_failed_flush(url, caplog)
        assert any("must be one the certificate names" in m for m in messages)
        assert not any("SSL_CERT_FILE" in m for m in messages)
