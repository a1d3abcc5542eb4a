"""Visits: one browser's pageviews linked in memory, sent only as a finished visit's ranges.

A visit is a run of pageviews from one browser with no gap of ``visit_gap`` seconds or
more. Pageviews are linked by a keyed hash (BLAKE2b, 128 bits) of the client address,
the user agent and the host. The key is a random secret that lives only in this
process's memory and is replaced every 24 hours; replacing it closes every open visit,
so no link outlives a day. An idle visit is closed by the sender's periodic sweep, a
full table closes its least recently active visit, and shutdown closes them all.

Nothing about an open visit is sent, logged or written anywhere. A closed visit becomes
one count-table key, ``("visit", start_hour, entry_route, duration_label, pages_label)``,
aggregated and sent like every other count.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from headcount._log import RateLimitedLog
from headcount._proxies import ClientAddress
from headcount._settings import TrackerSettings
from headcount._stats import Counters
from headcount._table import PageviewKey, VisitKey
from headcount.wire import duration_label, pages_label

__all__ = [
    "KEY_LIFETIME",
    "Clock",
    "CountPageview",
    "Emit",
    "Linked",
    "MemoryVisits",
    "VisitStore",
    "build_visit_store",
    "finished_visit",
    "link_material",
    "new_hasher",
]

Clock = Callable[[], float]
# Receives the keys of finished visits; the tracker counts them in its table.
Emit = Callable[[Sequence[VisitKey]], None]
# Counts a pageview whose request is already counted, once its link is made.
CountPageview = Callable[[PageviewKey], None]


class Linked(enum.Enum):
    """The store took the pageview: it counts it, entry or not, once the link is made."""

    PENDING = "pending"


KEY_LIFETIME: Final = 24 * 3600.0
LINK_BYTES: Final = 16
# Enough to tell browsers apart; a longer header only costs hashing time.
_MAX_USER_AGENT: Final = 512
# Visits closed per lock hold while sweeping, so requests never wait behind a sweep.
_SWEEP_CHUNK: Final = 1024


class VisitStore(Protocol):
    """Where open visits live: this process's memory, or a Redis shared by workers."""

    def record(
        self,
        peer: str | None,
        forwarded_for: str | None,
        user_agent: str | None,
        host: str | None,
        route: str,
        pageview: PageviewKey | None = None,
    ) -> bool | Linked | None:
        """One pageview on ``route``: continue its browser's visit or start one.

        True when this pageview started a visit (it is the visit's entry), False when it
        continued one, None when it was not linked (no client address, store unavailable);
        the caller counts its pageview accordingly. ``Linked.PENDING`` when the link is
        made later on another thread, which then counts ``pageview`` (given by the
        caller for that case) itself."""

    def sweep(self) -> None:
        """Close visits idle for ``visit_gap`` (and every visit once the key is due)."""

    def close(self) -> None:
        """The process is shutting down: emit what this store can still emit."""


def link_material(address: str, user_agent: str | None, host: str | None) -> bytes:
    """The bytes a visit's link key is hashed from. Never stored, never sent."""
    agent = (user_agent or "")[:_MAX_USER_AGENT]
    # NUL never occurs in a header value, so the three fields cannot run into each other.
    text = f"{address}\x00{agent}\x00{host or ''}"
    return text.encode("utf-8", "surrogatepass")


def new_hasher(secret: bytes) -> hashlib.blake2b:
    """A keyed BLAKE2b, copied per pageview rather than re-keyed: half the cost."""
    return hashlib.blake2b(key=secret, digest_size=LINK_BYTES)


def finished_visit(start_hour: int, route: str, seconds: float, pages: int) -> VisitKey:
    """The count-table key of a visit that has ended."""
    return (
        "visit",
        start_hour,
        route,
        duration_label(max(0.0, seconds), pages),
        pages_label(pages),
    )


class _OpenVisit:
    __slots__ = ("hour", "last", "pages", "route", "start")

    def __init__(self, now: float, route: str) -> None:
        self.start = now
        self.last = now
        self.pages = 1
        self.hour = int(now) // 3600 * 3600
        self.route = route

    def finished(self) -> VisitKey:
        return finished_visit(self.hour, self.route, self.last - self.start, self.pages)


class MemoryVisits:
    """Open visits of this process, keyed by link hash, least recently active first.

    Every worker process links only the requests it serves itself: behind a server with
    several workers one browser's visit may be split into several shorter ones. The Redis
    store shares visits between workers.
    """

    def __init__(
        self,
        settings: TrackerSettings,
        emit: Emit,
        *,
        clock: Clock = time.time,
        addresses: ClientAddress | None = None,
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._gap = settings.visit_gap
        self._max_visits = settings.max_visits
        self._addresses = addresses or ClientAddress(settings.trusted_proxies)
        self._lock = threading.Lock()
        self._open: OrderedDict[bytes, _OpenVisit] = OrderedDict()
        self._hasher = new_hasher(secrets.token_bytes(32))
        self._rotate_at = clock() + KEY_LIFETIME

    def __len__(self) -> int:
        return len(self._open)

    def record(
        self,
        peer: str | None,
        forwarded_for: str | None,
        user_agent: str | None,
        host: str | None,
        route: str,
        pageview: PageviewKey | None = None,
    ) -> bool | None:
        addresses = self._addresses
        # The common case (no proxies to trust) skips a call: this is the request path.
        address = addresses.resolve(peer, forwarded_for) if addresses.trusts_proxies else peer
        if not address:
            return None
        material = link_material(address, user_agent, host)
        finished: list[VisitKey] = []
        now = self._clock()
        # acquire/release rather than `with`: this runs on the request path.
        self._lock.acquire()
        try:
            if now >= self._rotate_at:
                self._rotate(now, finished)
            # Hashed under the lock, so a rotation can never let an old key's link in.
            hasher = self._hasher.copy()
            hasher.update(material)
            link = hasher.digest()
            visits = self._open
            visit = visits.get(link)
            if visit is not None:
                if now - visit.last < self._gap:
                    visit.last = max(visit.last, now)
                    visit.pages += 1
                    visits.move_to_end(link)
                    return False
                # Idle too long, and not swept yet: that visit is over.
                del visits[link]
                finished.append(visit.finished())
            elif len(visits) >= self._max_visits:
                finished.append(visits.popitem(last=False)[1].finished())
            visits[link] = _OpenVisit(now, route)
        finally:
            self._lock.release()
            if finished:
                self._emit(finished)
        return True

    def sweep(self) -> None:
        now = self._clock()
        cutoff = now - self._gap
        while True:
            finished: list[VisitKey] = []
            with self._lock:
                if now >= self._rotate_at:
                    self._rotate(now, finished)
                visits = self._open
                while visits and len(finished) < _SWEEP_CHUNK:
                    link, visit = next(iter(visits.items()))
                    if visit.last > cutoff:
                        break
                    del visits[link]
                    finished.append(visit.finished())
            if finished:
                self._emit(finished)
            if len(finished) < _SWEEP_CHUNK:
                return

    def close(self) -> None:
        with self._lock:
            finished = [visit.finished() for visit in self._open.values()]
            self._open.clear()
        if finished:
            self._emit(finished)

    def _rotate(self, now: float, finished: list[VisitKey]) -> None:
        """A new key; every visit linked with the old one ends now (lock held)."""
        finished.extend(visit.finished() for visit in self._open.values())
        self._open.clear()
        self._hasher = new_hasher(secrets.token_bytes(32))
        self._rotate_at = now + KEY_LIFETIME


def build_visit_store(
    settings: TrackerSettings,
    emit: Emit,
    count_pageview: CountPageview,
    counters: Counters,
    log: RateLimitedLog,
) -> VisitStore | None:
    """The store ``settings`` ask for, or None when visits are off."""
    mode = settings.visits_mode
    if mode == "off":
        return None
    if mode == "memory":
        return MemoryVisits(settings, emit)
    # Imported only when asked for: redis-py is an optional dependency.
    from headcount._visits_redis import RedisVisits

    return RedisVisits(settings, emit, counters, log, count_pageview=count_pageview)
