"""Group commit: batches that arrive together are written in one transaction.

A single writer thread owns all writes. While it commits one group, new batches queue
up; the next group takes all of them at once. Each request waits for the commit that
holds its batch, so a 2xx always means "on disk", and the cost of a durable fsync is
shared by every batch in the group.

The hand-off is kept to one thread wake-up per group and one event-loop callback per
group (not per batch): at thousands of small batches a second, that plumbing, not
SQLite, is what a request pays for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from headcount_collector.errors import StoreUnavailable
from headcount_collector.metrics import Metrics, NoMetrics
from headcount_collector.pending import PendingBatch
from headcount_collector.stores.base import Store

__all__ = ["GroupCommitter"]

logger = logging.getLogger("headcount_collector.groupcommit")

_Waiting = tuple[PendingBatch, "asyncio.Future[bool]"]


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        max_group: int = 512,
        max_pending: int = 20_000,
        metrics: Metrics | None = None,
    ) -> None:
        if max_group < 1 or max_pending < max_group:
            raise ValueError("need max_group >= 1 and max_pending >= max_group")
        self._store = store
        self._metrics: Metrics = metrics if metrics is not None else NoMetrics()
        self._max_group = max_group
        self._max_pending = max_pending
        self._pending: deque[_Waiting] = deque()
        self._work = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.groups = 0
        self.batches = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="headcount-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Commit every batch already accepted into the queue, then stop the writer."""
        self._stopping = True
        self._work.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def submit(self, batch: PendingBatch) -> bool:
        """Wait until ``batch`` is committed; True if applied, False if a duplicate.

        Raises StoreUnavailable when the store failed, or at once when so many batches
        are already waiting that this one would wait longer than a client should.
        """
        if self._loop is None or self._stopping:
            raise StoreUnavailable("the collector is not accepting writes")
        if len(self._pending) >= self._max_pending:
            raise StoreUnavailable("too many batches waiting for storage")
        future: asyncio.Future[bool] = self._loop.create_future()
        self._pending.append((batch, future))
        # Set takes the event's lock and notifies; under load it is usually set already.
        # Skipping it then is safe: the writer clears the event before it drains the
        # queue, so a set event means this batch is appended before that drain begins.
        if not self._work.is_set():
            self._work.set()
        return await future

    def _run(self) -> None:
        while True:
            self._work.wait()
            # Cleared before the queue is drained, never after: a submit that finds the
            # event still set skips setting it, and relies on this drain to take its batch.
            self._work.clear()
            while self._pending:
                count = min(len(self._pending), self._max_group)
                group = [self._pending.popleft() for _ in range(count)]
                self._commit(group)
            if self._stopping and not self._pending:
                return

    def _commit(self, group: list[_Waiting]) -> None:
        batches = [batch for batch, _ in group]
        started = time.perf_counter()
        try:
            applied: Sequence[bool | BaseException] = self._store.commit(batches, int(time.time()))
        except StoreUnavailable as exc:
            logger.warning("group commit failed, answering 503: %s", exc)
            self._metrics.store_error("unavailable")
            applied = [StoreUnavailable(str(exc))] * len(group)
        except Exception as exc:
            logger.exception("group commit failed unexpectedly")
            self._metrics.store_error("unexpected")
            applied = [StoreUnavailable(type(exc).__name__)] * len(group)
        else:
            self.groups += 1
            self.batches += len(group)
            self._metrics.committed(time.perf_counter() - started, len(group))
            for batch in batches:
                for kind, moved in batch.spilled.items():
                    self._metrics.keys_spilled(kind, moved)
            if any(batch.spilled for batch in batches):
                logger.warning(
                    "site %s reached max_keys_per_hour (%d); further new keys of that hour "
                    "count as (other)",
                    next(batch.site for batch in batches if batch.spilled),
                    self._store.key_cap,
                )
        assert self._loop is not None  # set by start() before the thread runs
        # RuntimeError: the loop is gone (shutdown without stop()); nobody is waiting.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, group, applied)


def _resolve(group: list[_Waiting], outcomes: Sequence[bool | BaseException]) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # the client went away and its request was cancelled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
