"""What one client may hold of the collector: header size, read deadlines, connections.

uvicorn's httptools protocol has none of these: it concatenates an endless header chunk
by chunk, waits forever for a half-sent request, and accepts connections until the
process runs out of file descriptors. ``GuardedHttpToolsProtocol`` adds, per connection:

- a header limit: more than ``max_header_bytes`` before the end of the headers, or more
  than ``max_headers`` fields, is answered 431 and the connection closed;
- a header deadline: a request whose headers are not complete ``header_timeout``
  seconds after the connection (or the previous response) is answered 408 and closed;
- a body deadline: a body not complete ``body_timeout`` seconds after its headers is
  answered 408 (if nothing was answered yet) and closed, so the app's read ends;
- a body memory budget per worker: request bodies still being read hold at most
  ``max_body_buffer`` bytes in all; past it the body that started longest ago is
  answered 503 and closed, so stalled uploads cannot pin memory and a client that sends
  its whole body still gets through;
- an answer deadline: a connection whose client has not read its answer for
  ``answer_timeout`` seconds (the transport's buffer full, writing paused) is dropped,
  and so is one with more than 32 requests waiting behind the one being answered;
- a connection bound per worker: past ``max_connections`` another connection is closed
  to make room: one whose client does not read its answers; else the one that has
  waited longest for its request headers, or for the rest of a body already answered
  (an early 401 or 413); failing those, the one whose unfinished body is arriving
  slowest (answered 503). Only connections whose request is whole and whose answer is
  moving are never closed for room, so idle, half-sent, trickled or unread requests can
  never lock out a client that sends a whole request. The body deadline
  also bounds a body nobody reads any more (the answer went out first), which uvicorn
  drops.

It also sends a response's head and its first body bytes in one write
(``CoalescingTransport``). Keep-alive idle time is uvicorn's own ``timeout_keep_alive``.
The CLI passes the limits to every worker process in an environment variable, as it
does the settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
from collections.abc import Iterable
from functools import cache
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "LIMITS_ENV",
    "CoalescingTransport",
    "GuardedHttpToolsProtocol",
    "HeldHeads",
    "ServerLimits",
    "add_limit_arguments",
    "uvicorn_options",
]

LIMITS_ENV = "HEADCOUNT_COLLECTOR_SERVER_LIMITS"
# File descriptors kept free for the database, logs and the listening socket.
_FD_RESERVE = 64


class ServerLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    max_body_buffer: int = 32 * 1024 * 1024
    answer_timeout: float = 30.0

    def connection_bound(self) -> int:
        """``max_connections``, lowered to what the process's file descriptors allow."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - _FD_RESERVE))


# What each limit's flag (its field name, dashed) says of it in --help.
_LIMIT_HELP = {
    "max_header_bytes": "request line and headers, in bytes; more is answered 431",
    "max_headers": "header fields per request; more is answered 431",
    "header_timeout": "seconds a request may take to send its headers",
    "body_timeout": "seconds a request may take to send its body",
    "keep_alive_timeout": "seconds an idle connection is kept between requests",
    "max_connections": "open connections; past it an idle, stalled or slowest one is closed",
    "max_body_buffer": "bytes of unfinished request bodies held; past it the oldest is refused",
    "answer_timeout": "seconds an answer may wait for the client to read it before the "
    "connection is dropped",
}


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServerLimits()
    group = parser.add_argument_group("client limits (per worker)")
    for name in ServerLimits.__struct_fields__:
        default = getattr(defaults, name)
        group.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=_LIMIT_HELP[name],
        )


def uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``uvicorn.run`` options that apply the limits given on the command line.

    Also hands the limits to the worker processes and raises this process's soft file
    descriptor limit to its hard limit, which the workers inherit.
    """
    limits = ServerLimits(**{name: getattr(args, name) for name in ServerLimits.__struct_fields__})
    for name, value in msgspec.structs.asdict(limits).items():
        if value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    os.environ[LIMITS_ENV] = msgspec.json.encode(limits).decode()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return {
        "http": f"{__name__}:GuardedHttpToolsProtocol",
        "timeout_keep_alive": limits.keep_alive_timeout,
    }


@cache
def _limits(encoded: str | None) -> ServerLimits:
    return ServerLimits() if encoded is None else msgspec.json.decode(encoded, type=ServerLimits)


class _TooManyHeaders(Exception):
    pass


class _TooManyPipelined(Exception):
    pass


# Requests one connection may have waiting behind the one being answered. No browser
# pipelines; a client that sends hundreds at once and never reads the answers held a
# parsed request per one, 76 MB for 45 connections in a review.
_MAX_PIPELINED = 32


def _plain_answer(status: int, reason: str, text: str) -> bytes:
    body = text.encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + body


_HEADERS_TOO_LARGE = _plain_answer(
    431, "Request Header Fields Too Large", "request headers too large or too many"
)
_REQUEST_TIMEOUT = _plain_answer(408, "Request Timeout", "request not received in time")
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\ncontent-length: 26\r\nconnection: close\r\n\r\n"
    b"too many unfinished bodies"
)


class _Worker:
    """What one worker's connections share: the body budget, the deadline sweep, the
    answer heads waiting for their bodies, and the count of malformed requests."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        self.held = 0
        self.heads = HeldHeads(loop)
        self._loop = loop
        self._connections = connections
        self._malformed = 0
        self._malformed_logged_at: float | None = None
        loop.call_later(_SWEEP_SECONDS, self._sweep)

    def malformed_request(self, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        """One request refused as malformed (400, or 431 for its headers): logged at
        once the first time, then as a count at most once a minute. uvicorn logs a
        warning for each, so a stranger could write thousands of lines a second into
        the log without a token, at any log level."""
        self._malformed += 1
        now = self._loop.time()
        last = self._malformed_logged_at
        if last is not None and now - last < _MALFORMED_LOG_SECONDS:
            return
        logger.warning(
            "Invalid HTTP request received (%d refused since the last such line; at most "
            "one line a minute)",
            self._malformed,
        )
        self._malformed = 0
        self._malformed_logged_at = now

    def _sweep(self) -> None:
        # One pass a fraction of a second for all connections, rather than a timer per
        # request: deadlines are seconds long, and timers cost every request.
        now = self._loop.time()
        for connection in list(self._connections):
            if isinstance(connection, GuardedHttpToolsProtocol):
                connection.check_deadlines(now)
        self._loop.call_later(_SWEEP_SECONDS, self._sweep)


_SWEEP_SECONDS = 0.25
_MALFORMED_LOG_SECONDS = 60.0
_INVALID_REQUEST = "Invalid HTTP request received."


class _CountedParseErrors:
    """uvicorn's logger for one connection, but for its line per malformed request,
    which the worker counts instead (``_Worker.malformed_request``)."""

    def __init__(self, logger: logging.Logger, worker: _Worker) -> None:
        self._logger = logger
        self._worker = worker

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        if msg == _INVALID_REQUEST and not args:
            self._worker.malformed_request(self._logger)
        else:
            self._logger.warning(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def _worker_of(protocol: HttpToolsProtocol) -> _Worker:
    # Kept on uvicorn's per-server state, which every connection of the worker shares.
    worker = getattr(protocol.server_state, "headcount_worker", None)
    if worker is None:
        worker = _Worker(protocol.loop, protocol.connections)
        setattr(protocol.server_state, "headcount_worker", worker)  # noqa: B010
    return worker


class HeldHeads:
    """The answer heads one event loop's connections hold (``CoalescingTransport``), each
    sent before the loop next waits for the network: one callback a loop turn for all of
    them, rather than one per answer."""

    __slots__ = ("_holding", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._holding: list[CoalescingTransport] = []
        self._scheduled = False

    def add(self, transport: CoalescingTransport) -> None:
        self._holding.append(transport)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._scheduled = False
        holding, self._holding = self._holding, []
        for transport in holding:
            transport.flush()


class CoalescingTransport:
    """A connection's transport that sends a response's head with its first body write.

    uvicorn writes the status line and headers as soon as the app starts its answer and
    the body in a second write: two send() calls, two TCP segments and two wake-ups of
    the client for every small answer, and every ingest answer is small. A head is held
    until the next write, which sends both at once, but never past the event loop's
    current turn (``HeldHeads``): an app that pauses between its head and its body (a
    stream, a long poll, a HEAD answer) has the head sent while it waits. Interim
    answers (100 Continue) are never held: the client waits for them before it sends
    the body.
    """

    __slots__ = ("_heads", "_held", "_transport")

    # Above this a first body write goes out beside the held head (writelines, one
    # send) rather than copied onto it.
    _COPY_LIMIT = 64 * 1024

    def __init__(self, transport: asyncio.Transport, heads: HeldHeads) -> None:
        self._transport = transport
        self._heads = heads
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            # The client reset or closed the connection: uvloop's transport raises on a
            # write, and uvicorn logged each as a 50-line traceback (a stranger wrote
            # 600 lines a second with pipelined requests and resets).
            self._held = None
            return
        held = self._held
        if held is not None:
            self._held = None
            if len(data) > self._COPY_LIMIT:
                self._transport.writelines((held, data))
            else:
                self._transport.write(held + data)
        elif data[:9] == b"HTTP/1.1 " and data[9:10] != b"1":
            self._held = data
            self._heads.add(self)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes]) -> None:
        self.flush()
        if not self._transport.is_closing():
            self._transport.writelines(list_of_data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            # A connection the client already closed or reset takes no more bytes (the
            # transport raises); the answer it held is lost with the connection.
            if not self._transport.is_closing():
                self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        # Whatever else a server version asks of its transport (set_protocol on an
        # upgrade, buffer limits) is the socket's own.
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits(os.environ.get(LIMITS_ENV))
        self._bound = self._limits.connection_bound()
        self._worker = _worker_of(self)
        self.logger = _CountedParseErrors(self.logger, self._worker)  # type: ignore[assignment]
        self._awaiting_headers = True
        self._header_bytes = 0
        self._headers_overflowed = False
        self._pipeline_overflowed = False
        self._waiting_since = 0.0
        self._body_bytes = 0
        self._body_started = 0.0
        self._writing_paused_since = 0.0

    # --- upgrades ------------------------------------------------------------------------

    # The collector serves no WebSocket. An upgrade request is answered as the plain HTTP
    # request it also is, and nothing is logged: uvicorn's WebSocket protocols log each
    # attempt with the client's address and the full query string (and every header at
    # debug), and even its refusal would let any stranger write lines into the log.
    def _should_upgrade_to_ws(self) -> bool:
        return False

    def _unsupported_upgrade_warning(self) -> None:
        pass

    # --- connection lifetime -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self._worker.heads))  # type: ignore[arg-type]
        self._await_request()
        if len(self.connections) > self._bound:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release_body()
        super().connection_lost(exc)

    def _make_room(self) -> None:
        """Close another connection that holds nothing being answered, or refuse this one.

        First one whose client does not read its answers, then the one that has waited
        longest for its headers or for the rest of a body that was already answered:
        none is owed anything. Then the one whose body is arriving slowest, answered
        503. Reviews held a worker's every connection without a token: with answered
        401s whose bodies trickled in, with pipelined requests whose answers were never
        read, with sign-in forms trickled a byte at a time."""
        others = [
            c
            for c in self.connections
            if isinstance(c, GuardedHttpToolsProtocol)
            and c is not self
            and not c.transport.is_closing()
        ]
        stalled = [c for c in others if c.flow.write_paused]
        if stalled:
            # Its client does not read its answers (pipelined requests, never read): the
            # answer can never be written, and closing would wait for it.
            min(stalled, key=lambda c: c._writing_paused_since).transport.abort()
            return
        idle = [c for c in others if c._awaiting_headers or c._draining()]
        if idle:
            min(idle, key=lambda c: c._waiting_since).transport.close()
            return
        reading = [c for c in others if c._reading_body()]
        if reading:
            # The slowest body, by bytes a second: a client sending a whole request sends
            # its body as fast as it can, a trickle a byte now and then (the oldest would
            # be a real upload that stalled once, behind a stranger's newer trickles).
            now = self.loop.time()
            slowest = min(reading, key=lambda c: c._body_bytes / max(now - c._body_started, 1e-3))
            slowest._close_with(_BUSY)
            slowest._release_body()
            return
        self.transport.close()  # every other request is whole and its answer moving

    def _draining(self) -> bool:
        """Answered, and reading the rest of a body only to drop it."""
        cycle = self.cycle
        return cycle is not None and cycle.response_complete and cycle.more_body

    def _reading_body(self) -> bool:
        """Its headers are in, its body is not, and nothing was answered yet."""
        cycle = self.cycle
        return (
            not self._awaiting_headers
            and cycle is not None
            and cycle.more_body
            and not cycle.response_started
        )

    def _release_body(self) -> None:
        self._worker.held -= self._body_bytes
        self._body_bytes = 0

    def _make_body_room(self) -> None:
        """Refuse the unfinished bodies that started longest ago until the budget holds."""
        reading = sorted(
            (
                c
                for c in self.connections
                if isinstance(c, GuardedHttpToolsProtocol) and c._body_bytes
            ),
            key=lambda c: c._body_started,
        )
        for connection in reading:
            if self._worker.held <= self._limits.max_body_buffer:
                return
            started = connection.cycle is not None and connection.cycle.response_started
            connection._close_with(b"" if started else _BUSY)
            connection._release_body()

    def _await_request(self) -> None:
        self._awaiting_headers = True
        self._header_bytes = 0
        self._waiting_since = self.loop.time()

    def _close_with(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writing_paused_since = self.loop.time()

    def check_deadlines(self, now: float) -> None:
        """Answer 408 and close when headers or body are overdue, and drop a connection
        whose client has not read its answer for ``answer_timeout`` (called by the
        sweep)."""
        if self.flow.write_paused:
            if now - self._writing_paused_since > self._limits.answer_timeout:
                self.transport.abort()
            return
        if self.transport.is_closing():
            return
        if self._awaiting_headers:
            if now - self._waiting_since > self._limits.header_timeout:
                self._close_with(_REQUEST_TIMEOUT)
            return
        cycle = self.cycle
        if cycle is None or not cycle.more_body:
            return
        if now - self._body_started > self._limits.body_timeout:
            # Once an answer has started (an early 401 whose body is still being read
            # and dropped), there is nothing more to say: just close.
            self._close_with(b"" if cycle.response_started else _REQUEST_TIMEOUT)

    # --- parsing ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Checked after feeding: a chunk that completes the headers is fine whatever
        # body follows it; one that leaves them incomplete past the limit is not. The
        # parser never holds more than the limit plus one read.
        if self._awaiting_headers and self._header_bytes > self._limits.max_header_bytes:
            self._close_with(_HEADERS_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        if self._pipeline_overflowed:
            self.transport.abort()
        elif self._headers_overflowed:
            self._close_with(_HEADERS_TOO_LARGE)
        else:
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        # Counted here rather than per field: a call per field costs every request. The
        # size too: headers that arrive whole in one read never trip data_received's
        # check (the request line, each field with its ": " and CRLF, the blank line).
        headers = self.headers
        if len(headers) > self._limits.max_headers or (
            len(self.url) + sum(len(name) + len(value) + 4 for name, value in headers) + 32
            > self._limits.max_header_bytes
        ):
            self._headers_overflowed = True
            raise _TooManyHeaders  # stops the parser; answered in send_400_response
        self._release_body()
        self._body_started = self.loop.time()
        super().on_headers_complete()
        if len(self.pipeline) > _MAX_PIPELINED:
            self._pipeline_overflowed = True
            raise _TooManyPipelined  # stops the parser; the connection is dropped

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            # Held until the answer goes out: the app keeps what it has read.
            self._body_bytes += len(body)
            self._worker.held += len(body)
            if self._worker.held > self._limits.max_body_buffer:
                self._make_body_room()
                if self.transport.is_closing():
                    return
        super().on_body(body)

    def on_message_complete(self) -> None:
        # No cycle: an upgrade request (websocket, h2c) on a fresh connection, which
        # uvicorn handles without one.
        answered = self.cycle is not None and self.cycle.response_complete
        super().on_message_complete()
        if answered and not self.pipeline and not self.transport.is_closing():
            self._await_request()  # the body of an early answer has been read and dropped

    def on_response_complete(self) -> None:
        self._release_body()
        if isinstance(self.transport, CoalescingTransport):
            self.transport.flush()
        pipelined = bool(self.pipeline)
        unread_body = self.cycle.more_body
        super().on_response_complete()
        if not (unread_body or pipelined or self.transport.is_closing()):
            self._await_request()
        elif unread_body:
            self._waiting_since = self.loop.time()  # idle from here, for _make_room
        # With the body unread (an early 401 or 413), uvicorn reads and drops the rest;
        # the body deadline still applies, so that cannot last longer than a body may.
