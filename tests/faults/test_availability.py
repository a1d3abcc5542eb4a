"""One client must not take the collector down (issue 12 §3), with real sockets.

A collector started through the CLI is attacked the way the review did: an endless
header, 1,100 idle half-sent requests, 300 unfinished gzip bodies. Under each, its RSS
stays within +64 MiB, ``/healthz`` answers within 1 s, and a whole ingest request from
another client is still accepted. Deadlines are shortened on the command line so that
each test is bounded to a few seconds; the limits themselves are the defaults.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from headcount import wire
from tests._servers import CollectorProcess, start_collector
from tests.collector.conftest import batch_body, pageview
from tests.conftest import SHOP_WRITE_TOKEN, site_file_text
from tests.faults.conftest import read_response, rss_kib, status_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MIB = 1024 * 1024
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
# Long enough to open 1,100 connections on a slow machine before the first one expires.
IDLE_HEADER_TIMEOUT = 5.0
RSS_BUDGET_KIB = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    directory = tmp_path_factory.mktemp("availability")
    sites = directory / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    process = start_collector(
        directory,
        sites,
        extra=(
            "--header-timeout", str(HEADER_TIMEOUT),
            "--body-timeout", str(BODY_TIMEOUT),
            "--keep-alive-timeout", "1",
        ),
    )  # fmt: skip
    yield process
    process.stop()


def address(server: CollectorProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def connect(server: CollectorProcess) -> socket.socket:
    return socket.create_connection(address(server), timeout=5)


def assert_still_serving(server: CollectorProcess, rss_before: int) -> None:
    """/healthz within 1 s, a whole ingest request accepted, RSS within budget."""
    started = time.monotonic()
    health = httpx.get(f"{server.url}/healthz", timeout=5)
    assert health.status_code == 200
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    ingest = httpx.post(
        server.url + wire.INGEST_PATH,
        content=batch_body([pageview("/still-here")]),
        headers={"Authorization": f"Bearer {SHOP_WRITE_TOKEN}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert ingest.status_code == 202, ingest.text
    assert time.monotonic() - started < 2.0  # an fsync'd commit, on a busy machine
    grown = rss_kib(server.process.pid) - rss_before
    assert grown < RSS_BUDGET_KIB, f"RSS grew by {grown} KiB"


def readable(sock: socket.socket) -> bool:
    # poll, not select: the sockets of these tests have numbers above FD_SETSIZE.
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def send_until_answered(sock: socket.socket, chunks: Iterable[bytes], seconds: float) -> int:
    """Send ``chunks`` until the server answers or closes; the bytes sent by then."""
    sent = 0
    deadline = time.monotonic() + seconds
    for chunk in chunks:
        if readable(sock) or time.monotonic() > deadline:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    return sent


def closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server said before closing ``sock`` (b"" for nothing), None if still open."""
    if not readable(sock):
        return None
    try:
        return read_response(sock, 1)
    except ConnectionResetError:
        return b""


def test_an_endless_header_is_refused_with_431(server: CollectorProcess) -> None:
    rss_before = rss_kib(server.process.pid)
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\nX-Endless: ")
        sent = send_until_answered(sock, itertools.repeat(b"a" * 16384), seconds=20)
        answer = read_response(sock, 5)
    assert status_of(answer) == 431
    # Cut off at the 16 KiB header limit: what was sent beyond it sat in socket buffers.
    assert sent < 8 * MIB
    assert_still_serving(server, rss_before)


@pytest.mark.parametrize("size", [17 * 1024, 120_000])
def test_headers_over_the_limit_in_one_read_are_refused_with_431(
    server: CollectorProcess, size: int
) -> None:
    """Headers that arrive whole in one read are held to the same 16 KiB (a review got a
    120,000-byte header answered 200)."""
    with connect(server) as sock:
        head = f"GET /healthz HTTP/1.1\r\nHost: collector\r\nX-Big: {'a' * size}\r\n\r\n"
        sock.sendall(head.encode())
        assert status_of(read_response(sock, 5)) == 431
    just_under = "a" * (16 * 1024 - 200)
    with connect(server) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: c\r\nX-Big: {just_under}\r\n\r\n".encode())
        assert status_of(read_response(sock, 5)) == 200


def test_too_many_header_fields_are_refused_with_431(server: CollectorProcess) -> None:
    fields = "".join(f"X-Field-{i}: {i}\r\n" for i in range(200))
    with connect(server) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: collector\r\n{fields}\r\n".encode())
        assert status_of(read_response(sock, 5)) == 431
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_a_header_sent_a_byte_at_a_time_meets_the_header_deadline(
    server: CollectorProcess,
) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        drip = itertools.chain.from_iterable(itertools.repeat([b"X", b""], 100))
        for byte in drip:
            if closed_by_server(sock) is not None or time.monotonic() - started > 15:
                break
            sock.sendall(byte)
            time.sleep(0.2)
        waited = time.monotonic() - started
        answer = read_response(sock, 2)
    assert status_of(answer) in (0, 408)
    assert waited < HEADER_TIMEOUT + 2


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"this test needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[CollectorProcess]:
    """A collector on a machine with 1,024 file descriptors, as the review's had."""
    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    process = start_collector(tmp_path, sites, extra=("--header-timeout", str(HEADER_TIMEOUT)))
    try:
        resource.prlimit(process.process.pid, resource.RLIMIT_NOFILE, (1024, 1024))
        yield process
    finally:
        process.stop()


def test_1100_idle_half_sent_requests_lock_nobody_out(small_server: CollectorProcess) -> None:
    server = small_server
    _raise_fd_limit(1100 + 256)
    rss_before = rss_kib(server.process.pid)
    idle: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(1100):
            sock = connect(server)
            sock.sendall(b"POST /v1/ingest HTTP/1.1\r\nHost: collector\r\n")
            idle.append(sock)
        # More half-sent requests than the collector has descriptors for: the
        # longest-waiting ones have been closed to make room, and a new client still
        # gets a whole request through.
        assert time.monotonic() - started < IDLE_HEADER_TIMEOUT, "setup too slow to mean anything"
        assert_still_serving(server, rss_before)
        # After the header deadline every one of them is gone.
        time.sleep(IDLE_HEADER_TIMEOUT + 1)
        still_open = [sock for sock in idle if closed_by_server(sock) is None]
        assert still_open == []
        assert_still_serving(server, rss_before)
    finally:
        for sock in idle:
            sock.close()


@pytest.fixture
def bounded_server(tmp_path: Path) -> Iterator[CollectorProcess]:
    """A collector that keeps at most 40 connections, with the default body deadline
    (30 s): longer than any of these tests, so only making room can free a slot."""
    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    process = start_collector(tmp_path, sites, extra=("--max-connections", "40"))
    yield process
    process.stop()


@pytest.mark.parametrize("token", [None, SHOP_WRITE_TOKEN], ids=["answered-401", "with-token"])
def test_bodies_trickled_on_every_connection_lock_nobody_out(
    bounded_server: CollectorProcess, token: str | None
) -> None:
    """A review held a worker's every connection without a token: each sent an ingest's
    headers with a large Content-Length, got its 401 at once, then a body byte now and
    then, and a whole request was refused for as long as the body deadline. An answered
    request's body is now closed for room like an idle connection, and failing those the
    body that started longest ago is refused with 503 (with a token the request is not
    answered until its body is whole)."""
    server = bounded_server
    rss_before = rss_kib(server.process.pid)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {wire.INGEST_PATH} HTTP/1.1\r\nHost: collector\r\n{auth}"
        "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    held: list[socket.socket] = []
    try:
        for _ in range(60):
            sock = connect(server)
            sock.sendall(head)
            held.append(sock)
        time.sleep(0.3)
        for sock in held:
            with contextlib.suppress(OSError):
                sock.sendall(b"[")  # the body keeps coming: no keep-alive close
        for _ in range(3):
            assert_still_serving(server, rss_before)
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.sendall(b"[")
        closed = [a for a in map(closed_by_server, held) if a is not None]
        assert len(closed) >= 20, len(closed)
        if token:
            assert sum(status_of(a) == 503 for a in closed) >= 15
    finally:
        for sock in held:
            sock.close()


def test_pipelined_requests_whose_answers_are_never_read_lock_nobody_out(
    bounded_server: CollectorProcess,
) -> None:
    """A review held every connection without a token: each sent 800 pipelined requests
    for a 31 KB public document and never read an answer, so each answer waited for ever
    to be written, and connections whose request was whole were never closed for room.
    A connection whose client does not read its answers is now the first to go."""
    server = bounded_server
    rss_before = rss_kib(server.process.pid)
    pipelined = b"GET /openapi.json HTTP/1.1\r\nHost: collector\r\n\r\n" * 800
    held: list[socket.socket] = []
    try:
        for _ in range(45):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # answers pile up
            sock.settimeout(5)
            sock.connect(address(server))
            sock.sendall(pipelined)
            held.append(sock)
        time.sleep(1.0)
        for _ in range(3):
            assert_still_serving(server, rss_before)
    finally:
        for sock in held:
            sock.close()


def test_a_real_upload_outlasts_trickled_sign_in_forms(bounded_server: CollectorProcess) -> None:
    """A stranger needs no token to keep a sign-in form's body coming. When room is made
    among unfinished bodies, the slowest goes, not the oldest: an SDK's batch that stalls
    once is not the one cut off."""
    server = bounded_server
    batch = batch_body([pageview("/outlasts")])
    upload = connect(server)
    upload.sendall(
        (
            f"POST {wire.INGEST_PATH} HTTP/1.1\r\nHost: collector\r\n"
            f"Authorization: Bearer {SHOP_WRITE_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(batch)}\r\n\r\n"
        ).encode()
        + batch[: len(batch) // 2]
    )
    forms: list[socket.socket] = []
    try:
        time.sleep(0.3)
        for _ in range(60):
            sock = connect(server)
            sock.sendall(
                b"POST /dashboard/sign-in HTTP/1.1\r\nHost: collector\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 4000\r\n\r\nt"
            )
            forms.append(sock)
        time.sleep(0.3)
        upload.sendall(batch[len(batch) // 2 :])
        assert status_of(read_response(upload, 5)) == 202
        # A form declared larger than a sign-in form is answered at once, not read.
        with connect(server) as large:
            large.sendall(
                b"POST /dashboard/sign-in HTTP/1.1\r\nHost: collector\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 100000\r\n\r\nt"
            )
            assert status_of(read_response(large, 5)) == 413
    finally:
        upload.close()
        for sock in forms:
            sock.close()


def test_300_unfinished_gzip_bodies_pin_no_memory(server: CollectorProcess) -> None:
    # Each body inflates to just under the 1 MiB limit, and its last bytes never come.
    body = gzip.compress(b"\0" * (MIB - 4096), compresslevel=9)
    head = (
        f"POST {wire.INGEST_PATH} HTTP/1.1\r\nHost: collector\r\n"
        f"Authorization: Bearer {SHOP_WRITE_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    rss_before = rss_kib(server.process.pid)
    stalled: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(300):
            sock = connect(server)
            sock.sendall(head + body[:-8])
            stalled.append(sock)
        assert time.monotonic() - started < BODY_TIMEOUT, "setup too slow to mean anything"
        assert_still_serving(server, rss_before)
        # At the body deadline each is answered 408 and closed.
        time.sleep(BODY_TIMEOUT + 1.5)
        answers = [closed_by_server(sock) for sock in stalled]
        assert [a for a in answers if a is None] == []
        assert sum(status_of(a or b"") == 408 for a in answers) >= 290
        assert_still_serving(server, rss_before)
    finally:
        for sock in stalled:
            sock.close()


def test_the_limits_apply_in_every_worker(tmp_path: Path) -> None:
    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    process = start_collector(tmp_path, sites, workers=2, extra=("--max-header-bytes", "4096"))
    try:
        for _ in range(6):  # connections are spread over both worker processes
            with connect(process) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\nX-Big: " + b"a" * 8192)
                assert status_of(read_response(sock, 5)) == 431
    finally:
        process.stop()


@pytest.mark.parametrize("flag", ["--header-timeout", "--max-connections", "--max-headers"])
def test_limits_must_be_positive(tmp_path: Path, flag: str) -> None:
    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "headcount_collector", "serve", "--config", str(sites),
         "--db", f"sqlite:///{tmp_path / 'db.sqlite3'}", flag, "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{flag} must be positive" in done.stderr


def test_stalled_large_bodies_are_bounded_by_the_body_budget(server: CollectorProcess) -> None:
    # 100 uploads of 800 KiB each (80 MiB in all) that never finish: past the 32 MiB
    # budget the oldest are refused, so the collector never holds them all.
    body_head = (
        f"POST {wire.INGEST_PATH} HTTP/1.1\r\nHost: collector\r\n"
        f"Authorization: Bearer {SHOP_WRITE_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MIB - 1024}\r\n\r\n"
    ).encode()
    rss_before = rss_kib(server.process.pid)
    stalled: list[socket.socket] = []
    try:
        for _ in range(100):
            sock = connect(server)
            sock.sendall(body_head)
            sock.sendall(b"[" * (800 * 1024))
            stalled.append(sock)
        time.sleep(0.5)
        assert_still_serving(server, rss_before)
        refused = [a for a in map(closed_by_server, stalled) if a is not None]
        assert sum(status_of(a) == 503 for a in refused) >= 50, len(refused)
    finally:
        for sock in stalled:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed(server: CollectorProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n")
        assert status_of(read_response(sock, 5)) == 200
        sock.settimeout(5)
        started = time.monotonic()
        leftover = b""
        while chunk := sock.recv(4096):
            leftover += chunk
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("fresh", [True, False])
def test_a_websocket_upgrade_is_answered_as_the_plain_request_it_also_is(
    server: CollectorProcess, fresh: bool
) -> None:
    """The collector serves no websocket: an upgrade is answered as the plain HTTP request
    it also is (here 401: no read token), on a new connection as on one that already
    answered a request (a new one used to fail inside the protocol and answer 400). It
    is never handed to a WebSocket protocol, whose log lines hold the client's address
    (tests/collector/test_server_promises.py)."""
    upgrade = (
        b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with connect(server) as sock:
        if not fresh:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            # Head and body arrive in one write, well inside the 1 s keep-alive.
            assert status_of(read_response(sock, 5)) == 200
        sock.sendall(upgrade)
        assert status_of(read_response(sock, 5)) == 401
