"""How each record kind is stored: one counter table per kind, derived from ``wire.KINDS``.

Every table leads with ``site`` (so it partitions or distributes by site), then the
resolution (``h`` hourly, ``d`` daily roll-up), then the bucket start in UTC seconds,
then the kind's dimensions in the registry's order. Values are stored as the registry's
normalisers make them: an absent optional value as '' (so it takes part in the primary
key), a flag as 0 or 1, event properties as canonical JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

from headcount import wire

__all__ = ["RECORD_KEYS", "TABLES", "KeyFunction", "Table", "spilled_key"]


@dataclass(frozen=True, slots=True)
class Table:
    kind: str
    name: str
    dimensions: tuple[str, ...]
    # Dimensions kept in an integer column; the others are text.
    integer: frozenset[str] = frozenset()

    def column_type(self, column: str) -> str:
        """The SQL type of a dimension column: ``integer`` or ``text``."""
        return "integer" if column in self.integer else "text"


TABLES: dict[str, Table] = {
    name: Table(
        name,
        f"hc_{name}",
        kind.dimension_names,
        frozenset(d.name for d in kind.dimensions if d.integer),
    )
    for name, kind in wire.KINDS.items()
}

# Storage values are text or integers (the registry's normalisers make them so).
KeyFunction = Callable[[wire.Record], tuple[str | int, ...]]


def _key_function(kind: wire.RecordKind) -> KeyFunction:
    """The storage values of a record of ``kind``, in column order.

    Ingest's hot loop: attrgetter reads every dimension in one C call; only the few
    values the registry normalises go through Python."""
    getter: Callable[[wire.Record], Any] = attrgetter(*kind.dimension_names)
    # attrgetter of a single name gives the value itself, not a tuple of one.
    read: KeyFunction = (lambda record: (getter(record),)) if len(kind.dimensions) == 1 else getter
    normalise = [(i, d.store) for i, d in enumerate(kind.dimensions) if d.store is not None]
    if not normalise:
        return read

    def key(record: wire.Record) -> tuple[str | int, ...]:
        values = list(read(record))
        for index, store in normalise:
            values[index] = cast("str | int", store(values[index]))
        return tuple(values)

    return key


# Per record type, its kind and its key function.
RECORD_KEYS: dict[type, tuple[str, KeyFunction]] = {
    kind.struct: (name, _key_function(kind)) for name, kind in wire.KINDS.items()
}


def _as_is(value: object) -> object:
    return value


_SPILLS = {
    name: tuple(
        (fold, store if store is not None else _as_is)
        for fold, store in ((d.fold, d.store) for d in kind.dimensions)
    )
    for name, kind in wire.KINDS.items()
    if kind.folds
}


def spilled_key(kind: str, dims: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The stored key that ``dims`` folds into once its hour's key cap is reached, or None
    for a kind with nothing open-ended to fold."""
    spills = _SPILLS.get(kind)
    if spills is None:
        return None
    return tuple(
        value if fold is None else cast("str | int", store(fold(value)))
        for (fold, store), value in zip(spills, dims, strict=True)
    )
