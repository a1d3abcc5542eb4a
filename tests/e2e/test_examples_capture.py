"""The capturing proxy the example tests scan through: if it missed or misread bytes,
their "nothing leaked" checks would pass for the wrong reason."""

from __future__ import annotations

import gzip
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ._capture import CapturingProxy, _Direction, parse_http_stream


class _ChunkedEcho(BaseHTTPRequestHandler):
    """Answers every POST with its decompressed body, chunked in two pieces."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        half = len(body) // 2
        for piece in (body[:half], body[half:]):
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[CapturingProxy]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _ChunkedEcho)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    capture = CapturingProxy("127.0.0.1", upstream.server_port)
    yield capture
    capture.close()
    upstream.shutdown()
    upstream.server_close()
    thread.join(5)


def test_gzip_and_chunked_bodies_are_decoded_in_both_directions(proxy: CapturingProxy) -> None:
    secret = f"needle-{secrets.token_hex(8)}".encode()
    payload = b'{"padding": "' + b"x" * 2000 + b'", "secret": "' + secret + b'"}'
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for _ in range(2):  # two messages on one kept-alive connection
            response = client.post(
                "/v1/ingest", content=gzip.compress(payload), headers={"Content-Encoding": "gzip"}
            )
            assert response.content == payload

    requests = proxy.requests()
    responses = proxy.responses()
    assert len(proxy.conversations) == 1
    assert [m.start_line.split()[:2] for m in requests] == [[b"POST", b"/v1/ingest"]] * 2
    assert all(m.body == payload for m in [*requests, *responses])
    # The request body is compressed on the wire: only decoding makes the secret visible.
    assert secret not in bytes(proxy.conversations[0].to_upstream.data)
    assert proxy.everything().count(secret) >= 4
    last = proxy.last_sent_at()
    assert last is not None
    assert requests[0].arrived <= requests[1].arrived <= last


def test_bytes_that_are_not_http_are_an_error_not_silently_skipped() -> None:
    stream = _Direction(bytearray(b"POST /v1/ingest HTTP/1.1\r\nContent-Length: 3\r\n"), [(0.0, 0)])
    with pytest.raises(ValueError, match="incomplete HTTP head"):
        parse_http_stream(stream)
