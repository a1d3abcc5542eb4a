"""The in-memory count table: coarse keys to counts, bounded, swapped out for sending."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Final

from headcount.wire import KINDS, Record, RecordKind

__all__ = [
    "CountTable",
    "Key",
    "PageviewKey",
    "VisitKey",
    "merge_counts",
    "overflow_key",
    "to_records",
    "with_entry",
]

# Keys are plain tuples, tagged by record kind, because hashing a tuple of interned
# strings is the cheapest thing Python can count by: ``(kind, hour, *values)``, the values
# in the order ``wire.KINDS`` declares the kind's dimensions:
#   ("request", hour, route, method, status_class, latency)
#   ("pageview", hour, route, referrer, utm_source, utm_medium, utm_campaign, entry)
#   ("bot", hour, category)
#   ("event", hour, name, route, ((prop, value), ...))
#   ("visit", start_hour, entry_route, duration_label, pages_label)
# The hot path builds them by hand for speed; a test holds them to the registry.
RequestKey = tuple[str, int, str, str, str, str]
PageviewKey = tuple[str, int, str, str, str | None, str | None, str | None, bool]
EventKey = tuple[str, int, str, str, tuple[tuple[str, str], ...]]
BotKey = tuple[str, int, str]
VisitKey = tuple[str, int, str, str, str]
Key = RequestKey | PageviewKey | EventKey | BotKey | VisitKey


def with_entry(key: PageviewKey, entry: bool) -> PageviewKey:
    """The same pageview key, counted as an entry or not."""
    return (*key[:-1], entry)


# Room above max_keys for overflow keys. Request, pageview and bot overflow keys are
# few per hour by construction; only events with ever-new names can reach this ceiling.
OVERFLOW_HEADROOM = 1024


# Per kind, the fold of each dimension (None: kept).
_FOLDS: Final = {
    name: tuple(d.fold for d in kind.dimensions) for name, kind in KINDS.items() if kind.folds
}


def overflow_key(key: Key) -> Key:
    """The key a new key is counted under once the table is full: its open-ended values
    folded as ``wire.KINDS`` declares (the route becomes (other))."""
    folds = _FOLDS.get(key[0])
    if folds is None:
        return key
    values = key[2:]
    folded = (v if fold is None else fold(v) for fold, v in zip(folds, values, strict=True))
    return (key[0], key[1], *folded)  # type: ignore[return-value]


class CountTable:
    """Counts per key for one send window, at most ``max_keys`` distinct keys.

    Once full, a new key counts under its ``overflow_key`` instead, so a flood of
    distinct routes leaves memory flat while totals stay right.
    """

    __slots__ = (
        "_configured_max",
        "_counts",
        "_lock",
        "_max_keys",
        "discarded",
        "overflowed",
        "recorded",
    )

    def __init__(self, max_keys: int) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Key, int] = {}
        self._configured_max = max_keys
        self._max_keys = fold_point(max_keys)
        self.recorded = 0
        self.overflowed = 0
        self.discarded = 0

    def add(self, key: Key, also: Key | None = None) -> None:
        """Count one request or event under ``key`` (and under ``also``, if given)."""
        # acquire/release rather than `with`: half the cost on CPython 3.11, and this is
        # the hot path. Nothing between acquire() and try can raise.
        self._lock.acquire()
        try:
            counts = self._counts
            self.recorded += 1
            n = counts.get(key)
            if n is not None:
                counts[key] = n + 1
            elif len(counts) < self._max_keys:
                counts[key] = 1
            else:
                self._add_overflow(key)
            if also is not None:
                n = counts.get(also)
                if n is not None:
                    counts[also] = n + 1
                elif len(counts) < self._max_keys:
                    counts[also] = 1
                else:
                    self._add_overflow(also)
        finally:
            self._lock.release()

    def add_finished_visits(self, keys: Iterable[VisitKey]) -> None:
        """Count finished visits: derived from pageviews already recorded, so they leave
        ``recorded`` alone."""
        with self._lock:
            # _bump inlined: an import closes a visit every other pageview.
            counts = self._counts
            for key in keys:
                n = counts.get(key)
                if n is not None:
                    counts[key] = n + 1
                elif len(counts) < self._max_keys:
                    counts[key] = 1
                else:
                    self._add_overflow(key)

    def add_linked_pageview(self, key: PageviewKey) -> None:
        """Count a pageview whose request was counted earlier, once its visit link said
        whether it is an entry (asyncio apps with Redis visits link on another thread)."""
        with self._lock:
            self._bump(key)

    def _bump(self, key: Key) -> None:
        """Add one under ``key`` (lock held). ``add`` inlines this: it is the hot path."""
        counts = self._counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < self._max_keys:
            counts[key] = 1
        else:
            self._add_overflow(key)

    def _add_overflow(self, key: Key) -> None:
        counts = self._counts
        key = overflow_key(key)
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < self._max_keys + OVERFLOW_HEADROOM:
            counts[key] = 1
        else:
            self.discarded += 1
            return
        self.overflowed += 1

    def swap(self) -> dict[Key, int]:
        """Take the current counts, leaving an empty window; O(1) under the lock."""
        with self._lock:
            counts, self._counts = self._counts, {}
            self._max_keys = fold_point(self._configured_max)
        return counts

    def snapshot(self) -> dict[Key, int]:
        with self._lock:
            return dict(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


def fold_point(max_keys: int) -> int:
    """Where this window starts folding new keys into (other): ``max_keys`` less a random
    offset of up to half of it. Whether a key is folded depends on how many keys other
    visitors brought; someone who floods the table and watches where folding starts
    cannot tell one more visitor from the offset."""
    return max_keys - secrets.randbelow(max(1, max_keys // 2))


def merge_counts(into: dict[Key, int], counts: Mapping[Key, int], max_keys: int) -> None:
    """Add ``counts`` into ``into``, keeping it within ``max_keys`` (+ overflow headroom)."""
    for key, n in counts.items():
        if key not in into and len(into) >= max_keys:
            key = overflow_key(key)
            if key not in into and len(into) >= max_keys + OVERFLOW_HEADROOM:
                continue
        into[key] = into.get(key, 0) + n


Builder = Callable[[Key, int], Record]


def _builder(kind: RecordKind) -> Builder:
    """Makes a record of ``kind`` from a key and its count: the struct's fields, in the
    struct's own order, picked out of ``(*key, n)`` in one C call."""
    struct: Callable[..., Record] = kind.struct  # type: ignore[assignment]
    fields = kind.struct.__struct_fields__
    position = {"hour": 1, **{d.name: 2 + i for i, d in enumerate(kind.dimensions)}}
    position["n"] = 2 + len(kind.dimensions)
    pick = itemgetter(*(position[name] for name in fields))
    converts = [(fields.index(d.name), d.to_wire) for d in kind.dimensions if d.to_wire is not None]
    if not converts:
        return lambda key, n: struct(*pick((*key, n)))

    def build(key: Key, n: int) -> Record:
        values = list(pick((*key, n)))
        for index, to_wire in converts:
            values[index] = to_wire(values[index])
        return struct(*values)

    return build


_BUILDERS: Final = {name: _builder(kind) for name, kind in KINDS.items()}


def _canonical(item: tuple[Key, int]) -> str:
    return repr(item[0])


def to_records(counts: Iterable[tuple[Key, int]]) -> list[Record]:
    """Wire records for ``(key, count)`` pairs, in an order fixed by the keys alone.

    A table keeps its keys in the order they were first counted, so on a quiet site the
    order of one hour's records would retrace a visitor's path through it (arrived from
    a referrer, opened a page, signed in, booked); sorted, the order says nothing the
    records do not."""
    builders = _BUILDERS
    return [builders[key[0]](key, n) for key, n in sorted(counts, key=_canonical)]
