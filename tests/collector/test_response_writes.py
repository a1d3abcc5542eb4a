"""The collector's HTTP protocol sends each small answer in one write, and holds nothing
a client waits for: driven through uvicorn's real parser and request cycle, with a
transport that records every write instead of a socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from headcount_collector.serverlimits import (
    CoalescingTransport,
    GuardedHttpToolsProtocol,
    HeldHeads,
)

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class RecordingTransport(asyncio.Transport):
    """Each send the socket would make, one entry per write() or writelines() call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise RuntimeError("unable to perform operation; the handler is closed")  # uvloop
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def writes_before_and_after(
    app: ASGIApp, release: asyncio.Event, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
) -> tuple[list[bytes], list[bytes]]:
    """What was sent while ``app`` waited for ``release``, and everything sent in the end."""
    protocol, transport = await connect(app)
    protocol.data_received(request)
    await settle()
    while_waiting = list(transport.writes)
    release.set()
    await settle()
    return while_waiting, transport.writes


async def connect(app: ASGIApp) -> tuple[GuardedHttpToolsProtocol, RecordingTransport]:
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None)
    config.load()
    protocol = GuardedHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


def answering(status: int, body: bytes) -> ASGIApp:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body", False):
            pass
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def sent_for(app: ASGIApp, request: bytes = GET) -> list[bytes]:
    """Every write of the answer(s) to ``request``, on a new connection."""

    async def run() -> list[bytes]:
        protocol, transport = await connect(app)
        protocol.data_received(request)
        await settle()
        return transport.writes

    return asyncio.run(run())


def test_a_small_answer_is_one_write_with_head_and_body() -> None:
    writes = sent_for(answering(202, b'{"accepted":1}'))
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 202 ")
    assert writes[0].endswith(b'\r\n\r\n{"accepted":1}')


@pytest.mark.parametrize(("status", "method"), [(204, b"GET"), (200, b"HEAD")])
def test_an_answer_without_a_body_is_sent_whole(status: int, method: bytes) -> None:
    writes = sent_for(answering(status, b""), method + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(writes) == 1
    assert writes[0].startswith(f"HTTP/1.1 {status} ".encode())
    assert writes[0].endswith(b"\r\n\r\n")


def test_pipelined_requests_are_answered_in_order() -> None:
    async def run() -> list[bytes]:
        calls = 0

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            nonlocal calls
            calls += 1
            body = f"answer {calls}".encode()
            await answering(200, body)(scope, receive, send)

        protocol, transport = await connect(app)
        protocol.data_received(GET + GET)
        await settle()
        return transport.writes

    sent = b"".join(asyncio.run(run()))
    assert sent.count(b"HTTP/1.1 200 ") == 2
    assert sent.index(b"answer 1") < sent.index(b"answer 2")
    assert sent.endswith(b"answer 2")


def test_100_continue_is_sent_before_the_client_sends_its_body() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        protocol, transport = await connect(answering(202, b"ok"))
        protocol.data_received(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        await settle()
        before_body = list(transport.writes)
        protocol.data_received(b"data")
        await settle()
        return before_body, transport.writes

    before_body, writes = asyncio.run(run())
    assert before_body == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert writes[-1].startswith(b"HTTP/1.1 202 ")
    assert writes[-1].endswith(b"ok")


def test_a_streamed_answer_sends_its_first_chunk_without_waiting_for_the_next() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        release = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await release.wait()
            await send({"type": "http.response.body", "body": b"second"})

        return await writes_before_and_after(app, release)

    while_streaming, writes = asyncio.run(run())
    assert len(while_streaming) == 1
    assert while_streaming[0].startswith(b"HTTP/1.1 200 ")
    assert while_streaming[0].endswith(b"5\r\nfirst\r\n")
    assert b"".join(writes).endswith(b"6\r\nsecond\r\n0\r\n\r\n")


def test_an_app_that_fails_after_its_head_still_gets_the_head_out_before_closing() -> None:
    async def run() -> RecordingTransport:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise RuntimeError("the app broke")

        protocol, transport = await connect(app)
        protocol.data_received(GET)
        await settle()
        return transport

    transport = asyncio.run(run())
    assert transport.closed
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 ")


def test_the_transport_holds_only_a_final_status_line() -> None:
    async def run() -> RecordingTransport:
        inner = RecordingTransport()
        outer = CoalescingTransport(inner, HeldHeads(asyncio.get_running_loop()))
        outer.write(b"HTTP/1.1 103 Early Hints\r\n\r\n")
        assert inner.writes == [b"HTTP/1.1 103 Early Hints\r\n\r\n"]
        outer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert len(inner.writes) == 1
        outer.flush()
        assert inner.writes[-1] == b"HTTP/1.1 200 OK\r\n\r\n"
        outer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        outer.close()
        assert inner.writes[-1] == b"HTTP/1.1 400 Bad Request\r\n\r\n"
        return inner

    assert asyncio.run(run()).closed


def pausing(head_only: bool) -> tuple[ASGIApp, asyncio.Event]:
    """An app that starts its answer, then waits for the test before its body."""
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"0" if head_only else b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await release.wait()
        await send({"type": "http.response.body", "body": b"" if head_only else b"body"})

    return app, release


@pytest.mark.parametrize(
    ("method", "head_only"), [(b"GET", False), (b"HEAD", False), (b"GET", True)]
)
def test_a_head_is_sent_while_the_app_waits_before_its_body(method: bytes, head_only: bool) -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        app, release = pausing(head_only)
        return await writes_before_and_after(
            app, release, method + b" / HTTP/1.1\r\nHost: x\r\n\r\n"
        )

    while_waiting, writes = asyncio.run(run())
    assert len(while_waiting) == 1
    assert while_waiting[0].startswith(b"HTTP/1.1 200 ")
    assert while_waiting[0].endswith(b"\r\n\r\n")
    expected_body = b"" if head_only or method == b"HEAD" else b"body"
    assert b"".join(writes[1:]) == expected_body


def test_body_bytes_that_look_like_a_status_line_are_not_held() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        release = asyncio.Event()
        chunks = (b"quoted: ", b"HTTP/1.1 200 OK", b" in a body")

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            length = str(len(b"".join(chunks))).encode()
            await send(
                {"type": "http.response.start", "status": 200,
                 "headers": [(b"content-length", length)]}
            )  # fmt: skip
            for chunk in chunks[:2]:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await release.wait()
            await send({"type": "http.response.body", "body": chunks[2]})

        return await writes_before_and_after(app, release)

    while_waiting, writes = asyncio.run(run())
    assert b"".join(while_waiting).endswith(b"quoted: HTTP/1.1 200 OK")
    assert b"".join(writes).endswith(b"quoted: HTTP/1.1 200 OK in a body")


def test_a_head_held_when_the_client_goes_away_is_dropped_quietly() -> None:
    async def run() -> list[bytes]:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        app, release = pausing(head_only=False)
        protocol, transport = await connect(app)
        protocol.data_received(GET)
        # The client resets the connection before the loop's turn ends.
        transport.closed = True
        await settle()
        release.set()
        await settle()
        protocol.connection_lost(ConnectionResetError())
        await settle()
        assert errors == []
        return transport.writes

    assert asyncio.run(run()) == []


def test_a_large_first_body_write_goes_out_with_the_head_in_one_call() -> None:
    writes = sent_for(answering(200, b"x" * 200_000))
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 ")
    assert writes[0].endswith(b"\r\n\r\n" + b"x" * 200_000)


def test_every_head_held_in_a_turn_is_sent_before_the_loop_waits_again() -> None:
    async def run() -> list[list[bytes]]:
        heads = HeldHeads(asyncio.get_running_loop())
        sockets = [RecordingTransport() for _ in range(3)]
        for number, inner in enumerate(sockets):
            CoalescingTransport(inner, heads).write(f"HTTP/1.1 200 OK\r\nx: {number}\r\n".encode())
        assert all(inner.writes == [] for inner in sockets)
        await asyncio.sleep(0)
        return [inner.writes for inner in sockets]

    assert asyncio.run(run()) == [[f"HTTP/1.1 200 OK\r\nx: {n}\r\n".encode()] for n in range(3)]
