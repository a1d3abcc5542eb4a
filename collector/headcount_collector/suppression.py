"""Small-count suppression for every released number.

Within each time bucket of a response ("a group"):

1. Primary: a cell whose count is below k is withheld.
2. Withheld cells (and cells past ``limit``) are folded into one ``(other)`` row, so the
   rows of a group always add up to its total and nothing has to be inferred.
3. Complementary: whenever the remainder holds a withheld cell, at least the smallest
   released cell is folded into it too, and more until the remainder reaches k and the
   folded released cells leave the withheld sum uncertain by at least k. A reader who
   knows how many released cells were folded (f) knows each lies between k and the
   smallest row still shown (m), so the withheld sum lies in an interval f * (m - k)
   wide: folding goes on until that is at least k, or no row is left to bound it. (Folding
   only one cell of 5 beside a shown 5, with k = 5, pinned a withheld 1 or 2 exactly: a
   review's attack guessed right 20 times in 20.) A reader can then not recover a withheld
   count from the total, the remainder or a difference of released numbers in the
   response, nor from the remainder and the number of cells in it (five cells summing to
   five).
4. If even the whole group sums to less than k, the group releases nothing at all: no
   rows, no total, and it is not counted in ``withheld`` either, so a bucket with a few
   events looks exactly like an empty one.

Representation: withheld cells are omitted and counted in ``withheld``; their counts
live on only inside ``(other)``. Across *different* queries this cannot close every gap
(a day's total minus its visible hours); see the privacy page.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["Cell", "SuppressedGroup", "suppress_group"]


@dataclass(frozen=True, slots=True)
class Cell:
    key: tuple[Hashable, ...]
    count: int


@dataclass(frozen=True, slots=True)
class SuppressedGroup:
    released: list[Cell]
    # Sum of the folded cells, or None when nothing is folded.
    other: int | None
    # The group's total, or None when the whole group is withheld.
    total: int | None
    withheld: int


def suppress_group(cells: Sequence[Cell], k: int, limit: int | None = None) -> SuppressedGroup:
    """Apply the rules above to one group of cells (all from the same time bucket)."""
    total = sum(cell.count for cell in cells)
    if k <= 1:
        ordered = sorted(cells, key=lambda c: -c.count)
        shown = ordered if limit is None else ordered[:limit]
        rest = ordered[len(shown) :]
        return SuppressedGroup(shown, sum(c.count for c in rest) if rest else None, total, 0)
    if total < k:
        return SuppressedGroup([], None, None, 0)
    visible = sorted((c for c in cells if c.count >= k), key=lambda c: -c.count)
    hidden = [c for c in cells if c.count < k]
    withheld = len(hidden)
    folded_beyond_limit: list[Cell] = []
    if limit is not None and len(visible) > limit:
        folded_beyond_limit = visible[limit:]
        visible = visible[:limit]
    remainder = sum(c.count for c in hidden) + sum(c.count for c in folded_beyond_limit)
    if hidden:
        folded = len(folded_beyond_limit)
        while visible and (remainder < k or folded * (visible[-1].count - k) < k):
            smallest = visible.pop()
            remainder += smallest.count
            withheld += 1
            folded += 1
    if hidden or folded_beyond_limit:
        other: int | None = remainder
    else:
        other = None
    return SuppressedGroup(visible, other, total, withheld)
