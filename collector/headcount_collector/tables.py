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

    Generated from the registry, the way dataclasses generates ``__init__``: ingest calls
    it for every record, and a loop over the dimensions costs several times the direct
    tuple (bench/registry_keys.py)."""
    namespace: dict[str, Any] = {}
    values = []
    for index, dimension in enumerate(kind.dimensions):
        value = f"record.{dimension.name}"
        if dimension.store is not None:
            namespace[f"store_{index}"] = dimension.store
            value = f"store_{index}({value})"
        values.append(value)
    source = f"def key(record):\n    return ({', '.join(values)},)\n"
    # The source holds only the registry's field names, which are Python identifiers.
    exec(source, namespace)  # noqa: S102
    return cast("KeyFunction", namespace["key"])


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
