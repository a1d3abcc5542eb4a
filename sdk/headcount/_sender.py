"""The background sender: batches, an outbox buffer, retries with backoff, deadlines.

Nothing here runs on the request path. A daemon thread, started lazily by the first
record, wakes every ``flush_interval`` (jittered), swaps the count table out and turns
it into encoded batches. Each batch keeps its ``batch_id`` and exact bytes until the
collector acknowledges it, so a retry is idempotent on the collector's side.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import importlib
import itertools
import random
import re
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import httpx
import msgspec

from headcount._log import RateLimitedLog, logger
from headcount._settings import TrackerSettings
from headcount._stats import Counters
from headcount._version import __version__
from headcount.wire import MAX_BODY_BYTES, MAX_RECORDS, Batch, Record

__all__ = ["SENDER_NAME", "Sender", "Take"]

# What a collect takes: the records due under the schedule, everything (an explicit
# flush), or at exit what is due, with the rest left in the exit spool if there is one.
Take = Literal["due", "everything", "exit"]

# A client's first request imports httpx's transport (httpcore), its CA bundle (certifi)
# and, to look the host name up, the idna codec; here that is on the sender thread. They
# are imported now, by the thread that imports the SDK: a process forked while another
# thread held a module's import lock inherits the lock held, and its own first send
# would wait on it for ever.
for _module in ("httpcore", "certifi", "encodings.idna"):  # httpx's needs, not ours
    with contextlib.suppress(ImportError):
        importlib.import_module(_module)

SENDER_NAME = "headcount-python"
_GZIP_ABOVE = 1024
# Stay clearly under the collector's limit: the limit is on bytes, batches are split by
# halving, and a margin costs nothing.
_BODY_LIMIT = MAX_BODY_BYTES - 16 * 1024
_MAX_RETRY_AFTER = 24 * 3600.0
_MAX_ERROR_TEXT = 200
_ENCODER = msgspec.json.Encoder()
# Only to salvage a refused batch's other records; never on the sending path.
_DECODER = msgspec.json.Decoder(Batch)


class _Outcome(Enum):
    DONE = "done"  # acknowledged, or given up on: leaves the buffer
    RETRY = "retry"  # stays at the head of the buffer until its backoff has passed
    NO_TIME = "no-time"  # the deadline left no time to try
    # The collector refused the token: kept, and not retried again within this send,
    # since only an operator fixing the token (or the site file) can help.
    HELD = "held"


# A wrong token is an operator's mistake, not the batch's fault: the batch stays in the
# buffer (within its bounds) so that fixing the token loses nothing.
_AUTH_STATUSES = frozenset({401, 403})


@dataclass(slots=True, eq=False)
class _PendingBatch:
    batch_id: str
    body: bytes
    gzipped: bool
    records: int
    created: float  # monotonic
    attempts: int = 0
    not_before: float = 0.0  # monotonic


class Sender:
    """Turns collected records into batches and gets them to the collector."""

    def __init__(
        self,
        settings: TrackerSettings,
        counters: Counters,
        log: RateLimitedLog,
        collect: Callable[[Take], list[Record]],
    ) -> None:
        self._settings = settings
        self._counters = counters
        self._log = log
        # collect(take): the records to send now (see Take).
        self._collect = collect
        self._rng = random.Random()
        # A batch id is this sender's name, its count of batches, then random digits
        # (see wire.Batch): the collector remembers one sender's ids side by side.
        self._id_prefix = secrets.token_hex(3)
        self._id_count = itertools.count(secrets.randbits(32))
        self._buffer: deque[_PendingBatch] = deque()
        self._buffer_bytes = 0
        self._buffer_lock = threading.Lock()
        self._in_flight: _PendingBatch | None = None
        # One sender at a time: the thread, flush() and shutdown() take turns.
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        # Batches (or single records) given up on: refused by the collector for good, or
        # dropped unsent (too old, buffer full). flush() and shutdown() compare it before
        # and after, so any of these makes them return False.
        self._given_up = 0
        # Why the last attempt failed, for the one line logged when counts are lost.
        self._last_problem = "no attempt to send was made"
        self._headers = {
            "Authorization": f"Bearer {settings.write_token}",
            "Content-Type": "application/json",
        }

    # --- lifecycle ------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="headcount-sender", daemon=True)
        self._thread = thread
        thread.start()

    def flush(self, timeout: float, take: Take = "everything") -> bool:
        """Send everything counted so far (``"exit"``: what is due, the rest left in the
        exit spool if there is one). True when all of it reached the collector: False
        when something is still buffered or the collector refused something."""
        deadline = time.monotonic() + timeout
        given_up = self._given_up
        self._enqueue(self._collect(take))
        delivered = self._send_buffered(deadline, wait=True)
        return delivered and self._given_up == given_up

    def shutdown(self, timeout: float) -> bool:
        """Stop the thread and make one last attempt to send, all within ``timeout``.

        Whatever is still unsent afterwards is lost with the process: one line says how
        much, and why.
        """
        deadline = time.monotonic() + timeout
        given_up = self._given_up
        self._stop.set()
        self._wake.set()
        try:
            self._enqueue(self._collect("exit"))
            # Last chance: a batch waiting out its backoff is tried once more now.
            delivered = self._send_buffered(deadline, wait=False, ignore_backoff=True)
            if not delivered:
                self._report_loss(timeout)
            return delivered and self._given_up == given_up
        finally:
            if self._thread is not None:
                self._thread.join(max(0.0, min(0.1, deadline - time.monotonic())))
            if self._client is not None and self._send_lock.acquire(False):
                try:
                    self._client.close()
                finally:
                    self._send_lock.release()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _report_loss(self, timeout: float) -> None:
        with self._buffer_lock:
            batches = len(self._buffer)
            records = sum(batch.records for batch in self._buffer)
        if not batches:
            return
        # Not rate-limited: it is said once, when the process gives the counts up.
        logger.warning(
            "headcount: %d count records in %d unsent batches are lost at shutdown "
            "(%.1f s were left to send them): %s",
            records,
            batches,
            timeout,
            self._last_problem,
        )

    # --- background thread ----------------------------------------------------------

    def _run(self) -> None:
        interval = self._settings.flush_interval
        # The first send comes sooner, so a short-lived worker still reports something.
        next_collect = time.monotonic() + interval * self._rng.uniform(0.1, 0.25)
        while not self._stop.is_set():
            wake_at = next_collect
            head = self._head()
            if head is not None and head.not_before > 0:
                wake_at = min(wake_at, head.not_before)
            if self._wake.wait(max(0.0, wake_at - time.monotonic())):
                self._wake.clear()
            if self._stop.is_set():
                return
            try:
                now = time.monotonic()
                if now >= next_collect:
                    self._enqueue(self._collect("due"))
                    next_collect = now + interval * self._rng.uniform(0.9, 1.1)
                deadline = now + max(interval, self._settings.request_timeout)
                self._send_buffered(deadline, wait=False)
            except Exception as exc:
                self._counters.add(errors=1)
                self._log.warning("internal", "headcount sender error: %s", type(exc).__name__)
                # Never spin on a persistent error.
                self._stop.wait(1.0)

    # --- batching and the buffer ----------------------------------------------------

    def _enqueue(self, records: Sequence[Record]) -> None:
        if not records:
            return
        batches: list[_PendingBatch] = []
        for start in range(0, len(records), MAX_RECORDS):
            self._encode(records[start : start + MAX_RECORDS], batches)
        max_age = self._settings.max_buffer_age
        dropped = 0
        with self._buffer_lock:
            for batch in batches:
                self._buffer.append(batch)
                self._buffer_bytes += len(batch.body)
            now = time.monotonic()
            while self._buffer and (
                len(self._buffer) > self._settings.max_buffer_batches
                or self._buffer_bytes > self._settings.max_buffer_bytes
                or now - self._buffer[0].created > max_age
            ):
                if not self._drop_oldest():
                    break
                dropped += 1
        if dropped:
            self._give_up(dropped)
            self._log.warning(
                "buffer-full", "headcount buffer full or stale: dropped %d unsent batches", dropped
            )

    def _drop_oldest(self) -> bool:
        """Drop the oldest batch that is not being sent right now (buffer lock held)."""
        for index, batch in enumerate(self._buffer):
            if batch is not self._in_flight:
                del self._buffer[index]
                self._buffer_bytes -= len(batch.body)
                return True
        return False

    def _next_batch_id(self) -> str:
        count = next(self._id_count) & 0xFFFFFFFF
        return f"{self._id_prefix}{count:08x}{secrets.token_hex(9)}"

    def _encode(self, records: Sequence[Record], out: list[_PendingBatch]) -> None:
        batch = Batch(
            batch_id=self._next_batch_id(),
            sender=SENDER_NAME,
            sender_version=__version__,
            records=list(records),
            visits=self._settings.visits_mode,
        )
        body = _ENCODER.encode(batch)
        if len(body) > _BODY_LIMIT and len(records) > 1:
            middle = len(records) // 2
            self._encode(records[:middle], out)
            self._encode(records[middle:], out)
            return
        gzipped = len(body) > _GZIP_ABOVE
        if gzipped:
            # mtime=0: the same records always compress to the same bytes.
            body = gzip.compress(body, compresslevel=6, mtime=0)
        out.append(_PendingBatch(batch.batch_id, body, gzipped, len(records), time.monotonic()))

    def _head(self) -> _PendingBatch | None:
        with self._buffer_lock:
            return self._buffer[0] if self._buffer else None

    def _give_up(self, batches: int) -> None:
        """Count batches (or records) dropped for good: in stats, and for flush() and
        shutdown(), which compare the count before and after."""
        self._counters.add(dropped=batches)
        # Under the buffer lock: the sender thread and a flushing thread both give up.
        with self._buffer_lock:
            self._given_up += batches

    def _remove(self, batch: _PendingBatch) -> None:
        with self._buffer_lock:
            try:
                self._buffer.remove(batch)
            except ValueError:
                return
            self._buffer_bytes -= len(batch.body)

    # --- sending ----------------------------------------------------------------------

    def _send_buffered(self, deadline: float, *, wait: bool, ignore_backoff: bool = False) -> bool:
        """Send buffered batches oldest first until done, out of time or backing off."""
        if not self._send_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            while True:
                batch = self._head()
                if batch is None:
                    return True
                now = time.monotonic()
                if now - batch.created > self._settings.max_buffer_age:
                    self._remove(batch)
                    self._give_up(1)
                    continue
                if batch.not_before > now and not ignore_backoff:
                    if not wait or batch.not_before >= deadline:
                        return False
                    # Interruptible: shutdown() cuts a flush's backoff wait short.
                    if self._stop.wait(batch.not_before - now):
                        return False
                    continue
                self._in_flight = batch
                try:
                    outcome = self._attempt(batch, deadline)
                finally:
                    self._in_flight = None
                if outcome is _Outcome.DONE:
                    self._remove(batch)
                elif outcome is _Outcome.NO_TIME:
                    self._last_problem = "no time was left to send them"
                    return False
                elif outcome is _Outcome.HELD or ignore_backoff:
                    return False
        finally:
            self._send_lock.release()

    def _http_client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                transport=self._settings.transport,
                timeout=self._settings.request_timeout,
                headers={"User-Agent": f"{SENDER_NAME}/{__version__}"},
            )
        return self._client

    def _attempt(self, batch: _PendingBatch, deadline: float) -> _Outcome:
        timeout = min(self._settings.request_timeout, deadline - time.monotonic())
        if timeout < 0.001:
            return _Outcome.NO_TIME
        if batch.attempts:
            self._counters.add(retried=1)
        batch.attempts += 1
        headers = self._headers
        if batch.gzipped:
            headers = {**headers, "Content-Encoding": "gzip"}
        try:
            client = self._http_client()
            # build_request + send rather than post(): the per-attempt timeout then goes
            # into the request itself.
            request = client.build_request(
                "POST",
                self._settings.ingest_url,
                content=batch.body,
                headers=headers,
                timeout=timeout,
            )
            response = client.send(request)
        except httpx.TransportError as exc:
            certificate = _ssl_error(exc)
            if certificate is not None:
                # Not an outage: it will not pass on its own, and says what to change.
                self._last_problem = "the collector's TLS certificate was not accepted"
                hint = (
                    "the endpoint's host name (or address) must be one the certificate names"
                    if certificate.verify_code in _NAME_MISMATCH
                    else "a certificate of a private CA needs that CA trusted, e.g. "
                    "SSL_CERT_FILE=/path/to/ca.pem"
                )
                self._log.warning(
                    "certificate",
                    "headcount cannot verify the collector's TLS certificate (%s); will retry; %s",
                    certificate.verify_message or certificate,
                    hint,
                )
            else:
                self._last_problem = f"the collector was unreachable ({type(exc).__name__})"
                self._log.warning(
                    "unreachable",
                    "headcount collector unreachable (%s); will retry",
                    type(exc).__name__,
                )
            self._back_off(batch, None)
            return _Outcome.RETRY
        except Exception as exc:
            self._counters.add(errors=1)
            self._last_problem = f"sending failed ({type(exc).__name__})"
            self._log.warning(
                "send-error", "headcount send failed (%s); will retry", type(exc).__name__
            )
            self._back_off(batch, None)
            return _Outcome.RETRY
        status = response.status_code
        if 200 <= status < 300:
            # 202 accepted, or 200 duplicate: the collector has applied this batch_id.
            late = _late_counts(response)
            self._counters.add(sent=1, late=late)
            if late:
                self._log.warning(
                    "late",
                    "headcount: %d counts reached the collector after their hour was sealed; "
                    "they count in their day, not in that hour (see stats().late)",
                    late,
                )
            return _Outcome.DONE
        if status in (408, 429) or status >= 500:
            self._last_problem = f"the collector answered HTTP {status}"
            self._log.warning(
                "retryable-status", "headcount collector answered HTTP %d; will retry", status
            )
            self._back_off(batch, response.headers.get("Retry-After"))
            return _Outcome.RETRY
        if status in _AUTH_STATUSES:
            self._last_problem = f"the collector refused the write token (HTTP {status})"
            self._log.error(
                "auth",
                "headcount: the collector at %s refused the write token (HTTP %d): counts "
                "are kept (%d batches buffered, within max_buffer_*) and retried; fix "
                "write_token, or the site's write_token_sha256 on the collector",
                self._settings.safe_endpoint,
                status,
                len(self._buffer),
            )
            self._back_off(batch, response.headers.get("Retry-After"))
            return _Outcome.HELD
        if status == 422 and self._salvage(batch, response):
            return _Outcome.DONE
        self._give_up(1)
        self._log.warning(
            "rejected",
            "headcount collector rejected a batch of %d records (HTTP %d from POST %s): %s",
            batch.records,
            status,
            self._settings.safe_ingest_url,
            _error_text(response)
            if status != 404
            else "no collector ingest here; endpoint must be the collector's base URL",
        )
        return _Outcome.DONE

    def _salvage(self, batch: _PendingBatch, response: httpx.Response) -> bool:
        """Drop the one record the collector refused and queue the rest as a new batch.

        The collector stores nothing of a refused batch, so resending its other records
        under a fresh batch id cannot count anything twice; without this, one event the
        site has not declared would throw away a whole window of pageviews.
        """
        index = _refused_record(response)
        if index is None:
            return False
        try:
            body = gzip.decompress(batch.body) if batch.gzipped else batch.body
            records = _DECODER.decode(body).records
        except Exception:
            return False
        if not 0 <= index < len(records):
            return False
        del records[index]
        self._give_up(1)
        self._log.warning(
            "refused-record",
            "headcount collector refused one record (%s); resending the other %d",
            _error_text(response),
            len(records),
        )
        if not records:
            return True
        replacements: list[_PendingBatch] = []
        self._encode(records, replacements)
        with self._buffer_lock:
            try:
                position = self._buffer.index(batch) + 1
            except ValueError:
                position = 0
            for offset, replacement in enumerate(replacements):
                self._buffer.insert(position + offset, replacement)
                self._buffer_bytes += len(replacement.body)
        return True

    def _back_off(self, batch: _PendingBatch, retry_after: str | None) -> None:
        delay = _parse_retry_after(retry_after)
        if delay is None:
            exponential = self._settings.backoff_initial * 2 ** min(batch.attempts - 1, 30)
            delay = min(self._settings.backoff_max, exponential) * self._rng.uniform(0.5, 1.0)
        batch.not_before = time.monotonic() + delay


_REFUSED_RECORD = re.compile(r"^\$\.records\[(\d+)\]")


def _refused_record(response: httpx.Response) -> int | None:
    """The index of the record a 422 names in its JSON path, if it names one."""
    try:
        path = response.json().get("path")
    except (ValueError, AttributeError):
        return None
    match = _REFUSED_RECORD.match(path) if isinstance(path, str) else None
    return int(match.group(1)) if match else None


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), _MAX_RETRY_AFTER)


def _error_text(response: httpx.Response) -> str:
    """The collector's short error message, printable characters only."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        text = payload["error"]
    else:
        text = response.text
    text = "".join(c if c.isprintable() else " " for c in text[:_MAX_ERROR_TEXT])
    return text.strip() or "(no message)"


def _late_counts(response: httpx.Response) -> int:
    """Counts the collector stored for hours it had already sealed (``{"late": N}``)."""
    if response.status_code != 202:
        return 0
    try:
        late = response.json().get("late", 0)
    except (ValueError, AttributeError):
        return 0
    return late if isinstance(late, int) and late > 0 else 0


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH and _IP_ADDRESS_MISMATCH: the
# certificate is fine, the name it is reached by is not.
_NAME_MISMATCH = frozenset({62, 63, 64})


def _ssl_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind a transport error, if that is what it is."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore, which wraps the ssl module's error
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
