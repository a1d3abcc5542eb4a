"""What both visit stores share: how a pageview's link is made, and a finished visit's key.

Pageviews are linked by a keyed hash (BLAKE2b, 128 bits) of the client address, the user
agent and the host. Neither the material nor the hash is ever sent, logged or written
anywhere but the store; a finished visit leaves only as its range labels.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from headcount._table import PageviewKey, VisitKey
from headcount.wire import duration_label, pages_label

__all__ = [
    "KEY_LIFETIME",
    "LINK_BYTES",
    "Clock",
    "CountPageview",
    "Emit",
    "Linked",
    "VisitStore",
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
        now: float | None = None,
    ) -> bool | Linked | None:
        """One pageview on ``route``: continue its browser's visit or start one.

        ``now`` is when the page was asked for, on the wall clock (``time.time``, or the
        replay clock the store was built with): the tracker passes the request's start,
        which orders a browser's pageviews even when another worker records the next one
        first, and saves a clock call. A store on another clock orders by it only.

        True when this pageview started a visit (it is the visit's entry), False when it
        continued one, None when it was not linked (no client address, store unavailable);
        the caller counts its pageview accordingly. ``Linked.PENDING`` when the link is
        made later on another thread, which then counts ``pageview`` (given by the
        caller for that case) itself."""

    def settle(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the pageviews this store took
        (``Linked.PENDING``) to be linked and counted."""

    def sweep(self) -> None:
        """Close visits idle for ``visit_gap`` (and every visit once the key is due)."""

    def close(self) -> None:
        """The process is shutting down: emit what this store can still emit."""


def link_material(address: str, user_agent: str | None, host: str | None) -> bytes:
    """The bytes a visit's link key is hashed from. Never stored, never sent."""
    agent = (user_agent or "")[:_MAX_USER_AGENT]
    # NUL never occurs in a header value, so the three fields cannot run into each other.
    text = f"{address}\x00{agent}\x00{host or ''}"
    try:
        # Without an error handler, str.encode takes CPython's fast path; headers
        # almost never hold a lone surrogate (a server's surrogateescape decoding).
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def new_hasher(secret: bytes) -> hashlib.blake2b:
    """A keyed BLAKE2b, copied per pageview rather than re-keyed: half the cost."""
    return hashlib.blake2b(key=secret, digest_size=LINK_BYTES)


# pages_label of the page counts nearly every visit has, looked up rather than searched.
_PAGES_LABELS: Final = tuple(pages_label(pages) for pages in range(32))


def finished_visit(start_hour: int, route: str, seconds: float, pages: int) -> VisitKey:
    """The count-table key of a visit that has ended."""
    return (
        "visit",
        start_hour,
        route,
        duration_label(max(0.0, seconds), pages),
        _PAGES_LABELS[pages] if 0 <= pages < 32 else pages_label(pages),
    )
