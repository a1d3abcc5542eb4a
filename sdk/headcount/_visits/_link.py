"""What both visit stores share: how a pageview's link is made, and a finished visit's key.

Pageviews are linked by a keyed hash (BLAKE2b, 128 bits) of the client address, the user
agent and the host. Neither the material nor the hash is ever sent, logged or written
anywhere but the store; a finished visit leaves only as its range labels.

The memory store hashes on the request path, so it puts the user agent and host first
(``AgentStates``): the hash's state after them repeats for every pageview of that browser
kind, and only the address is hashed per pageview. That is the same keyed BLAKE2b, of the
same three fields: two compressions of the block function per pageview where hashing a
typical browser's whole material took three, and no 150-byte string built per pageview.
The Redis store keeps its own material: its links are shared by workers that may run
older versions.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from headcount._table import PageviewKey, VisitKey
from headcount.wire import duration_label, pages_label

__all__ = [
    "KEY_LIFETIME",
    "LINK_BYTES",
    "AgentStates",
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
# A Host longer than a DNS name and port is not kept in AgentStates, so what a client
# sends cannot make the cache large.
_MAX_CACHED_HOST: Final = 262
_BLOCK: Final = 128  # BLAKE2b's block, which its key fills on its own


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
    # Servers refuse a NUL in a header value (RFC 9110), so the fields cannot run into
    # each other; if one let it through, only that one address's pageviews could merge.
    return _encoded(f"{address}\x00{agent}\x00{host or ''}")


def new_hasher(secret: bytes) -> hashlib.blake2b:
    """A keyed BLAKE2b, copied per pageview rather than re-keyed: half the cost."""
    return hashlib.blake2b(key=secret, digest_size=LINK_BYTES)


class AgentStates:
    """The memory store's link key, and the hash states it reaches after each browser's
    user agent and host: a visit's link is that state, copied, with the client address
    (UTF-8) hashed last.

    ``get((user_agent, host))`` is a remembered state or None (a dict's own ``get``, for
    the request path); ``state(user_agent, host)`` makes one and remembers it, at most
    ``maxsize``, oldest out first. A state holds the user agent (one of at most 512
    characters; a longer one is never kept) and the host, as the bot cache holds the
    user agent; never a client address. With the key it lets anyone work out that
    browser kind's links, and it is as secret: never logged, sent or written. The
    caller serializes access (the store's lock) and drops the whole object when the key
    is replaced, so no state outlives its key.
    """

    __slots__ = ("_keyed", "_maxsize", "_states", "get")

    def __init__(self, secret: bytes, maxsize: int = 4096) -> None:
        self._keyed = new_hasher(secret)
        self._maxsize = maxsize
        # Oldest out by popitem: a plain dict's first key, after many deletions, is
        # found by scanning the deleted slots before it.
        self._states: OrderedDict[tuple[str | None, str | None], hashlib.blake2b] = OrderedDict()
        self.get: Callable[[tuple[str | None, str | None]], hashlib.blake2b | None] = (
            self._states.get
        )

    def __len__(self) -> int:
        return len(self._states)

    def state(self, user_agent: str | None, host: str | None) -> hashlib.blake2b:
        """The state for this browser kind, made now and remembered; copy it before
        hashing anything into it, or the address would be in the cache."""
        agent = _encoded((user_agent or "")[:_MAX_USER_AGENT])
        site = _encoded(host or "")
        # Each field after its length: a header may hold a NUL, so no separator byte
        # could keep the fields from running into each other. The address comes last
        # and ends the material.
        fields = b"".join(
            (len(agent).to_bytes(4, "big"), agent, len(site).to_bytes(4, "big"), site)
        )
        # CPython's BLAKE2b holds up to two blocks before compressing, and compresses
        # the last one or two only in digest(). Zeros after the fields, as many as the
        # fields' length fixes, leave one byte past a block held: every block before it
        # is compressed here, once, and each link's digest compresses two blocks,
        # whatever the fields' lengths (an address of up to 127 bytes).
        state = self._keyed.copy()
        state.update(fields + bytes((1 - len(fields)) % _BLOCK))
        if (user_agent is None or len(user_agent) <= _MAX_USER_AGENT) and (
            host is None or len(host) <= _MAX_CACHED_HOST
        ):
            states = self._states
            if len(states) >= self._maxsize:
                states.popitem(last=False)
            states[(user_agent, host)] = state
        return state


def _encoded(text: str) -> bytes:
    try:
        # Without an error handler, str.encode takes CPython's fast path; headers
        # almost never hold a lone surrogate (a server's surrogateescape decoding).
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


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
