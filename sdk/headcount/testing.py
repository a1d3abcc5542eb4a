"""A recording collector for testing an instrumented app, the way httpx ships MockTransport.

    from headcount import Tracker
    from headcount.testing import RecordingCollector
    from headcount.wire import Pageview

    collector = RecordingCollector()
    tracker = Tracker("http://collector.test", "token", transport=collector.transport())
    ...  # drive the app
    tracker.flush()
    assert collector.counts(Pageview, "route") == {("/users/{id}",): 2}
    assert collector.rejected == []

It accepts what the real collector accepts, site settings aside: each batch is decoded
strictly against the wire schema (``headcount.wire``), and routes, referrers and
campaign values must be what the SDK would send. A batch that is not is answered 422,
as the collector would, and its reason kept in ``rejected``. A batch sent again (the
same ``batch_id``, a retry) is recorded once and answered 200, as the collector does.

For apps under a real server in another process, ``serve()`` listens on a local port
and answers the same way.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import httpx
import msgspec

from headcount import wire

__all__ = ["RecordingCollector"]

RecordT = TypeVar("RecordT", wire.Pageview, wire.Request, wire.Event, wire.Bot, wire.Visit)


class RecordingCollector:
    """Keeps every valid batch sent to it; answers like the collector's ingest endpoint.

    ``write_token``, when given, is the only token accepted (others are answered 401).
    Thread-safe: a Tracker sends from its own thread.
    """

    def __init__(self, write_token: str | None = None) -> None:
        self.write_token = write_token
        self._lock = threading.Lock()
        self._batches: dict[str, wire.Batch] = {}
        self._rejected: list[str] = []

    # --- what was received -------------------------------------------------------------

    @property
    def batches(self) -> list[wire.Batch]:
        """Every batch accepted, once each, in arrival order."""
        with self._lock:
            return list(self._batches.values())

    @property
    def rejected(self) -> list[str]:
        """Why each refused request was refused (empty when every send was valid)."""
        with self._lock:
            return list(self._rejected)

    def records(self, kind: type[RecordT]) -> list[RecordT]:
        """Every accepted record of one kind (``wire.Pageview``, ``wire.Request``, ...)."""
        return [r for batch in self.batches for r in batch.records if isinstance(r, kind)]

    def counts(self, kind: type[RecordT], *fields: str) -> Counter[tuple[object, ...]]:
        """The counts of one kind summed by the values of ``fields``, e.g.
        ``counts(wire.Request, "route", "status")[("/about", "2xx")]``."""
        found: Counter[tuple[object, ...]] = Counter()
        for record in self.records(kind):
            found[tuple(getattr(record, field) for field in fields)] += record.n
        return found

    def total(self, kind: type[RecordT]) -> int:
        """The sum of the counts of one kind."""
        return sum(record.n for record in self.records(kind))

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()
            self._rejected.clear()

    # --- how it is reached -------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        """An in-process transport for ``Tracker(..., transport=...)``: no network."""
        return httpx.MockTransport(self._handle_request)

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Listen on a free local port while the block runs; yields the endpoint URL."""
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = collector.receive(
                    self.path,
                    self.headers.get("Authorization", ""),
                    self.headers.get("Content-Encoding", ""),
                    body,
                )
                payload = msgspec.json.encode(answer)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)

    def receive(
        self, path: str, authorization: str, content_encoding: str, body: bytes
    ) -> tuple[int, dict[str, object]]:
        """Handle one POST; returns the status and JSON body the collector would answer."""
        if path != wire.INGEST_PATH:
            return self._refuse(404, f"POST to {path}, not {wire.INGEST_PATH}")
        if self.write_token is not None and authorization != f"Bearer {self.write_token}":
            return self._refuse(401, "missing or wrong write token")
        if content_encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return self._refuse(400, "body is not valid gzip")
        if len(body) > wire.MAX_BODY_BYTES:
            return self._refuse(413, f"body larger than {wire.MAX_BODY_BYTES} bytes")
        try:
            batch = msgspec.json.decode(body, type=wire.Batch)
        except msgspec.DecodeError as exc:
            return self._refuse(422, f"not a valid batch: {exc}")
        problem = _problem_of(batch)
        if problem is not None:
            return self._refuse(422, problem)
        with self._lock:
            if batch.batch_id in self._batches:
                return 200, {"duplicate": True}
            self._batches[batch.batch_id] = batch
        return 202, {"accepted": len(batch.records)}

    def _handle_request(self, request: httpx.Request) -> httpx.Response:
        status, answer = self.receive(
            request.url.path,
            request.headers.get("Authorization", ""),
            request.headers.get("Content-Encoding", ""),
            request.read(),
        )
        return httpx.Response(status, json=answer)

    def _refuse(self, status: int, reason: str) -> tuple[int, dict[str, object]]:
        with self._lock:
            self._rejected.append(reason)
        return status, {"error": reason}


def _problem_of(batch: wire.Batch) -> str | None:
    """Why a schema-valid batch still holds a value the SDK never sends, or None."""
    for index, record in enumerate(batch.records):
        found = wire.record_problem(record)
        if found is not None:
            return f"$.records[{index}].{found[0]} {found[1]}"
    return None
