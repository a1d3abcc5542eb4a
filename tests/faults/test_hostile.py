"""Hostile clients against a real collector (CLI, uvicorn, --access-log).

Oversize and gzip-bomb bodies are cut off early without the server holding them; slow
clients do not starve others; tokens open only what they are for; guessed tokens get
nothing and leave no trace in the log.
"""

from __future__ import annotations

import gzip
import secrets
import select
import socket
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from headcount import wire
from tests._servers import CollectorProcess, start_collector
from tests.collector.conftest import batch_body, pageview
from tests.conftest import READ_TOKEN, SHOP_READ_TOKEN, SHOP_WRITE_TOKEN, WRITE_TOKEN
from tests.faults.conftest import read_response, rss_kib, status_of, stored_everything

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    from tests.conftest import site_file_text

    directory = tmp_path_factory.mktemp("hostile")
    sites = directory / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    process = start_collector(directory, sites, extra=("--access-log",))
    yield process
    process.stop()


def connect(server: CollectorProcess) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def ingest_head(token: str, extra: str) -> bytes:
    return (
        f"POST {wire.INGEST_PATH} HTTP/1.1\r\nHost: collector\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_declared_oversize_body_is_refused_before_it_is_sent(server: CollectorProcess) -> None:
    with connect(server) as sock:
        sock.sendall(ingest_head(SHOP_WRITE_TOKEN, f"Content-Length: {50 * MIB}\r\n"))
        started = time.monotonic()
        assert status_of(read_response(sock, 5)) == 413
        assert time.monotonic() - started < 2


def stream_until_answered(sock: socket.socket, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``chunks`` until the server answers; (answer, bytes of body sent by then)."""
    sent = 0
    for chunk in chunks:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
        time.sleep(0.002)
    return read_response(sock, 5), sent


def test_streamed_oversize_body_is_cut_off_early(server: CollectorProcess) -> None:
    pid = server.process.pid
    before = rss_kib(pid)
    piece = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    total = 50 * MIB // len(piece)
    with connect(server) as sock:
        sock.sendall(ingest_head(SHOP_WRITE_TOKEN, "Transfer-Encoding: chunked\r\n"))
        answer, sent = stream_until_answered(sock, iter([frame] * total))
    assert status_of(answer) == 413
    # Answered after about the 1 MiB limit, long before the client finished 50 MiB.
    assert sent < 8 * MIB
    assert rss_kib(pid) - before < 20 * 1024


def test_gzip_bomb_is_cut_off_while_inflating(server: CollectorProcess) -> None:
    pid = server.process.pid
    before_rss = rss_kib(pid)
    before = stored_everything(server.db_path)
    # 200 MiB of zeros in about 200 KiB: far under the limit compressed, far over inflated.
    bomb = gzip.compress(b"\0" * (200 * MIB), compresslevel=9)
    assert len(bomb) < wire.MAX_BODY_BYTES
    started = time.monotonic()
    answer = httpx.post(
        server.url + wire.INGEST_PATH,
        content=bomb,
        headers={
            "Authorization": f"Bearer {SHOP_WRITE_TOKEN}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
        timeout=10,
    )
    assert answer.status_code == 413
    assert time.monotonic() - started < 2
    assert rss_kib(pid) - before_rss < 20 * 1024
    assert stored_everything(server.db_path) == before


def test_slow_clients_do_not_starve_others(server: CollectorProcess) -> None:
    trickling: list[socket.socket] = []
    try:
        for number in range(40):
            sock = connect(server)
            if number % 2:
                # Headers complete, then a body that arrives one byte at a time.
                sock.sendall(ingest_head(SHOP_WRITE_TOKEN, "Content-Length: 5000\r\n"))
            else:
                sock.sendall(b"POST /v1/ingest HTTP/1.1\r\nHost: coll")
            trickling.append(sock)
        timings: list[float] = []
        with httpx.Client(timeout=5) as client:
            for round_no in range(30):
                for sock in trickling:
                    sock.sendall(b"x" if round_no % 2 else b"{")
                started = time.monotonic()
                answer = client.post(
                    server.url + wire.INGEST_PATH,
                    content=batch_body([pageview("/slow-neighbours")]),
                    headers={
                        "Authorization": f"Bearer {SHOP_WRITE_TOKEN}",
                        "Content-Type": "application/json",
                    },
                )
                timings.append(time.monotonic() - started)
                assert answer.status_code == 202
                time.sleep(0.03)
        assert max(timings) < 1.0, timings
        assert statistics.median(timings) < 0.1, timings
    finally:
        for sock in trickling:
            sock.close()


def test_tokens_open_only_what_they_are_for(server: CollectorProcess) -> None:
    url = server.url
    shop_only = batch_body([pageview("/shop-only-page", n=3)])
    shop_write = {"Authorization": f"Bearer {SHOP_WRITE_TOKEN}", "Content-Type": "application/json"}
    assert httpx.post(url + wire.INGEST_PATH, content=shop_only, headers=shop_write).is_success
    # A write token cannot read, anywhere.
    for token in (WRITE_TOKEN, SHOP_WRITE_TOKEN):
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(url + "/v1/stats", headers=bearer).status_code == 401
        assert httpx.get(url + "/v1/schema", headers=bearer).status_code == 401
    # A read token cannot write.
    read_as_write = {
        "Authorization": f"Bearer {SHOP_READ_TOKEN}",
        "Content-Type": "application/json",
    }
    body = batch_body([pageview("/x")])
    assert (
        httpx.post(url + wire.INGEST_PATH, content=body, headers=read_as_write).status_code == 401
    )
    # A read token reads its own site only: naming another site is refused, and the other
    # site's rows never appear.
    blog_read = {"Authorization": f"Bearer {READ_TOKEN}"}
    refused = httpx.get(url + "/v1/stats", params={"site": "shop"}, headers=blog_read)
    assert refused.status_code == 400
    assert refused.json()["parameter"] == "site"
    own = httpx.get(
        url + "/v1/stats",
        params={"by": "route", "filter": "route:/shop-only-page", "interval": "total"},
        headers=blog_read,
    ).json()
    assert own["site"] == "blog"
    assert own["rows"] == []
    shop = httpx.get(
        url + "/v1/stats",
        params={"by": "route", "filter": "route:/shop-only-page", "interval": "total"},
        headers={"Authorization": f"Bearer {SHOP_READ_TOKEN}"},
    ).json()
    assert [row["count"] for row in shop["rows"]] == [3]


def test_guessed_tokens_get_nothing_and_leave_no_trace(server: CollectorProcess) -> None:
    before = stored_everything(server.db_path)
    guesses = [f"hc{kind}_{secrets.token_urlsafe(24)}" for kind in "wr" for _ in range(100)]
    body = batch_body([pageview("/guess")])
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for guess in guesses:
            bearer = {"Authorization": f"Bearer {guess}", "Content-Type": "application/json"}
            refused = client.post(wire.INGEST_PATH, content=body, headers=bearer)
            assert refused.status_code == 401
            assert guess not in refused.text
            read = client.get("/v1/stats", headers=bearer)
            assert read.status_code == 401
            assert "rows" not in read.text
    assert stored_everything(server.db_path) == before
    time.sleep(0.2)  # let the access log reach the file
    log = server.log_text()
    assert "401" in log, "the access log should show the refused requests"
    for token in [*guesses, WRITE_TOKEN, READ_TOKEN, SHOP_WRITE_TOKEN, SHOP_READ_TOKEN]:
        assert token not in log
        assert token.split("_", 1)[1][:12] not in log
