"""Open visits in this process's memory.

The link key is a random secret that lives only in this process's memory and is replaced
every 24 hours; replacing it closes every open visit, so no link outlives a day. An idle
visit is closed by the sender's periodic sweep, a full table closes its least recently
active visit, and shutdown closes them all.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Final

from headcount._proxies import ClientAddress
from headcount._settings import TrackerSettings
from headcount._table import PageviewKey, VisitKey
from headcount._visits._link import KEY_LIFETIME, AgentStates, Clock, Emit, finished_visit
from headcount.wire import duration_label, pages_label

__all__ = ["MemoryVisits"]

_ONE_PAGE_DURATION: Final = duration_label(0.0, 1)
_ONE_PAGE: Final = pages_label(1)
# Visits closed per lock hold while sweeping, so requests never wait behind a sweep.
_SWEEP_CHUNK: Final = 1024


class _OpenVisit:
    __slots__ = ("hour", "last", "pages", "route", "start")

    def __init__(self, now: float, route: str) -> None:
        self.begin(now, route)

    def begin(self, now: float, route: str) -> None:
        """Start this visit at ``now`` on ``route`` (a new one, or the next one of a
        link whose visit went idle)."""
        self.start = now
        self.last = now
        self.pages = 1
        self.hour = int(now) // 3600 * 3600
        self.route = route

    def finished(self) -> VisitKey:
        if self.pages == 1:
            # Most visits are one page long: their key needs no duration range.
            return ("visit", self.hour, self.route, _ONE_PAGE_DURATION, _ONE_PAGE)
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
        self._trusts_proxies = self._addresses.trusts_proxies
        self._lock = threading.Lock()
        self._open: OrderedDict[bytes, _OpenVisit] = OrderedDict()
        self._agents = AgentStates(secrets.token_bytes(32))
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
        now: float | None = None,
    ) -> bool | None:
        # The common case (no proxies to trust) skips a call: this is the request path.
        address = self._addresses.resolve(peer, forwarded_for) if self._trusts_proxies else peer
        if not address:
            return None
        if now is None:
            now = self._clock()
        # Allocated only when a visit ends: most pageviews end none.
        finished: list[VisitKey] | None = None
        # acquire/release rather than `with`: this runs on the request path.
        self._lock.acquire()
        try:
            if now >= self._rotate_at:
                # Every visit ends with the old key: the table is empty from here on.
                finished = self._rotate(now)
            # Hashed under the lock, so a rotation can never let an old key's link in.
            agents = self._agents
            state = agents.get((user_agent, host))
            if state is None:
                state = agents.state(user_agent, host)
            hasher = state.copy()
            # _link._encoded, inlined: a call costs as much as the encoding here.
            try:
                hasher.update(address.encode())
            except UnicodeEncodeError:
                hasher.update(address.encode("utf-8", "surrogatepass"))
            link = hasher.digest()
            visits = self._open
            visit = visits.get(link)
            if visit is not None:
                if now - visit.last < self._gap:
                    if now > visit.last:
                        visit.last = now
                    visit.pages += 1
                    visits.move_to_end(link)
                    return False
                # Idle too long, and not swept yet: that visit is over, and this
                # pageview starts the link's next one in its place.
                finished = [visit.finished()]
                visit.begin(now, route)
                visits.move_to_end(link)
                return True
            if len(visits) >= self._max_visits:
                finished = [visits.popitem(last=False)[1].finished()]
            visits[link] = _OpenVisit(now, route)
        finally:
            self._lock.release()
            if finished:
                self._emit(finished)
        return True

    def settle(self, timeout: float) -> None:
        """Nothing to wait for: every link is made in ``record``."""

    def sweep(self) -> None:
        now = self._clock()
        cutoff = now - self._gap
        while True:
            finished: list[VisitKey] = []
            with self._lock:
                if now >= self._rotate_at:
                    finished = self._rotate(now)
                visits = self._open
                # Taken off the front (least recently active first): one call a visit
                # rather than an iterator, a lookup and a delete (an import closes a
                # visit every other pageview).
                oldest = visits.popitem
                while visits and len(finished) < _SWEEP_CHUNK:
                    link, visit = oldest(last=False)
                    if visit.last > cutoff:
                        # Still open: back in its place, and so is every later one.
                        visits[link] = visit
                        visits.move_to_end(link, last=False)
                        break
                    finished.append(visit.finished())
            if finished:
                self._emit(finished)
            if len(finished) < _SWEEP_CHUNK:
                return

    def close(self) -> None:
        with self._lock:
            finished = [visit.finished() for visit in self._open.values()]
            self._open.clear()
            # Nothing made with this key stays in memory once the store is closed.
            self._agents = AgentStates(secrets.token_bytes(32))
        if finished:
            self._emit(finished)

    def _rotate(self, now: float) -> list[VisitKey]:
        """A new key; every visit linked with the old one ends now (lock held): their
        keys, for the caller to emit once the lock is released."""
        finished = [visit.finished() for visit in self._open.values()]
        self._open.clear()
        self._agents = AgentStates(secrets.token_bytes(32))
        self._rotate_at = now + KEY_LIFETIME
        return finished
