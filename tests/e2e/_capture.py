"""A capturing TCP proxy: sits between an instrumented app and the collector and keeps
every byte that crosses it, both ways, so a test can scan exactly what the SDK sent.

Threads rather than asyncio: the tests drive blocking subprocesses and HTTP clients,
and a plain thread per direction keeps the proxy byte-for-byte transparent.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass, field

__all__ = ["CapturingProxy", "Conversation", "HttpMessage", "parse_http_stream"]

_CHUNK = 65536


@dataclass
class _Direction:
    data: bytearray = field(default_factory=bytearray)
    # (monotonic time, offset of the first byte received at that time), in order.
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    def arrival_of(self, offset: int) -> float:
        index = bisect_right([start for _, start in self.arrivals], offset) - 1
        return self.arrivals[max(index, 0)][0]


@dataclass
class Conversation:
    """One TCP connection through the proxy."""

    to_upstream: _Direction = field(default_factory=_Direction)
    from_upstream: _Direction = field(default_factory=_Direction)


@dataclass(frozen=True)
class HttpMessage:
    """One HTTP/1.1 request or response as it crossed the proxy."""

    start_line: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    raw_body: bytes
    arrived: float  # monotonic time its first byte reached the proxy

    def header(self, name: str) -> bytes | None:
        wanted = name.lower().encode("ascii")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def body(self) -> bytes:
        """The body with any gzip content encoding undone."""
        if (self.header("content-encoding") or b"").strip().lower() == b"gzip":
            return gzip.decompress(self.raw_body)
        return self.raw_body


def _dechunk(data: bytes, start: int) -> tuple[bytes, int]:
    body = bytearray()
    position = start
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end].split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            # Optional trailers, then the blank line that ends the message.
            position = data.index(b"\r\n\r\n", position - 2) + 4
            return bytes(body), position
        body += data[position : position + size]
        position += size + 2


def parse_http_stream(direction: _Direction) -> list[HttpMessage]:
    """Split one direction of a connection into HTTP/1.1 messages.

    Raises ValueError for bytes that are not HTTP/1.1, so a scan never silently skips
    traffic it could not read.
    """
    data = bytes(direction.data)
    messages: list[HttpMessage] = []
    position = 0
    while position < len(data):
        head_end = data.find(b"\r\n\r\n", position)
        if head_end < 0:
            raise ValueError(f"incomplete HTTP head at byte {position}")
        lines = data[position:head_end].split(b"\r\n")
        headers = tuple(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(b":") for line in lines[1:])
        )
        arrived = direction.arrival_of(position)
        head = HttpMessage(lines[0], headers, b"", arrived)
        body_start = head_end + 4
        length = head.header("content-length")
        if (head.header("transfer-encoding") or b"").lower() == b"chunked":
            body, position = _dechunk(data, body_start)
        elif length is not None:
            position = body_start + int(length)
            body = data[body_start:position]
        elif lines[0].startswith(b"HTTP/"):
            # A response without a length runs to the end of the connection.
            body, position = data[body_start:], len(data)
        else:
            body, position = b"", body_start
        messages.append(HttpMessage(lines[0], headers, body, arrived))
    return messages


class CapturingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` and records every byte both ways."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.conversations: list[Conversation] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="capture-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            conversation = Conversation()
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self.conversations.append(conversation)
                self._sockets += [client, upstream]
                for source, sink, record in (
                    (client, upstream, conversation.to_upstream),
                    (upstream, client, conversation.from_upstream),
                ):
                    thread = threading.Thread(
                        target=self._pump, args=(source, sink, record), daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: _Direction) -> None:
        while True:
            try:
                chunk = source.recv(_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                # Pass the half-close on, so the other side sees the end of the stream.
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                record.arrivals.append((time.monotonic(), len(record.data)))
                record.data += chunk
            try:
                sink.sendall(chunk)
            except OSError:
                return

    def last_sent_at(self) -> float | None:
        """When the app last sent any byte through the proxy (monotonic), or None."""
        with self._lock:
            times = [
                c.to_upstream.arrivals[-1][0] for c in self.conversations if c.to_upstream.arrivals
            ]
        return max(times, default=None)

    def requests(self) -> list[HttpMessage]:
        """Every request the app sent, in order of arrival."""
        with self._lock:
            streams = [c.to_upstream for c in self.conversations]
            messages = [m for s in streams for m in parse_http_stream(s)]
        return sorted(messages, key=lambda m: m.arrived)

    def responses(self) -> list[HttpMessage]:
        with self._lock:
            streams = [c.from_upstream for c in self.conversations]
            return [m for s in streams for m in parse_http_stream(s)]

    def everything(self) -> bytes:
        """All raw bytes both ways, followed by every decoded body: what a scan reads."""
        with self._lock:
            raw = b"".join(
                bytes(c.to_upstream.data) + bytes(c.from_upstream.data) for c in self.conversations
            )
        decoded = b"".join(m.body for m in [*self.requests(), *self.responses()])
        return raw + decoded

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        with contextlib.suppress(OSError):
            # Wakes the thread blocked in accept(); close() alone would not.
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for sock in sockets:
            sock.close()
        self._acceptor.join(5)
