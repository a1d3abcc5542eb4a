"""Group commit: batches that arrive together are written in one transaction.

A single writer thread owns all writes. While it commits one group, new batches queue
up; the next group takes all of them at once. Each request waits for the commit that
holds its batch, so a 2xx always means "on disk", and the cost of a durable fsync is
shared by every batch in the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from headcount_collector.errors import StoreUnavailable
from headcount_collector.stores.base import PendingBatch, Store

__all__ = ["GroupCommitter"]

logger = logging.getLogger("headcount_collector.groupcommit")


class GroupCommitter:
    def __init__(self, store: Store, max_group: int = 512) -> None:
        self._store = store
        self._max_group = max_group
        self._pending: list[tuple[PendingBatch, asyncio.Future[bool]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hc-writer")
        self.groups = 0
        self.batches = 0

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="headcount-group-commit")

    async def stop(self) -> None:
        # Let every batch already accepted into the queue reach the disk first.
        while self._pending:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, batch: PendingBatch) -> bool:
        """Wait until ``batch`` is committed; True if applied, False if a duplicate."""
        if self._wakeup is None:
            raise RuntimeError("GroupCommitter.start() was not awaited")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        assert self._wakeup is not None  # start() sets it before creating this task
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                group = self._pending[: self._max_group]
                del self._pending[: self._max_group]
                batches = [batch for batch, _ in group]
                try:
                    applied = await loop.run_in_executor(
                        self._executor, self._store.commit, batches, int(time.time())
                    )
                except StoreUnavailable as exc:
                    logger.warning("group commit failed, answering 503: %s", exc)
                    for _, future in group:
                        if not future.done():
                            future.set_exception(StoreUnavailable(str(exc)))
                    continue
                except Exception as exc:
                    logger.exception("group commit failed unexpectedly")
                    for _, future in group:
                        if not future.done():
                            future.set_exception(StoreUnavailable(type(exc).__name__))
                    continue
                self.groups += 1
                self.batches += len(group)
                for (_, future), ok in zip(group, applied, strict=True):
                    if not future.done():
                        future.set_result(ok)
