"""Which noisy cells exist: the marginals released for each table, at each resolution.

A released cell is site x table x resolution x time bucket x marginal x the marginal's
dimension values. Counts split across many dimensions fragment into small cells that
the threshold hides, so summing the full cells of a table would lose most of a long
tail. Each table therefore releases a few marginals that its common questions need
(pageviews by route, by referrer; requests by route and status class...) plus the full
cross-product for anything else, each noised on its own.

Every marginal costs privacy budget: one protected unit (a page load) adds to one cell
of each marginal of each table it touches, at each resolution. ``policy`` counts these
releases to split the budget, so adding a marginal here automatically makes every other
one noisier; keep the list short.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from headcount import wire

__all__ = [
    "MARGINALS",
    "RESOLUTIONS",
    "UNITS",
    "UNIT_OF_KIND",
    "Effect",
    "Marginal",
    "Resolution",
    "Unit",
]

Resolution = Literal["h", "d"]
# Hourly cells for charts within a day, daily cells (local days) for longer ranges: a
# month summed from 30 daily cells has sqrt(24) times less noise than from 720 hours.
RESOLUTIONS: Final[tuple[Resolution, ...]] = ("h", "d")


@dataclass(frozen=True, slots=True)
class Marginal:
    """The counts of ``kind`` restricted to ``where`` and grouped by ``dims``."""

    kind: str
    dims: tuple[str, ...]
    where: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        # Released cells are stored under these names: each must be a dimension of the
        # kind as wire.KINDS declares it.
        declared = wire.KINDS[self.kind].dimension_names
        unknown = [d for d in (*self.dims, *(c for c, _ in self.where)) if d not in declared]
        if unknown:
            raise ValueError(f"{self.kind} has no dimension {', '.join(unknown)}")

    @property
    def code(self) -> str:
        """The stable name stored with each released cell."""
        condition = "".join(f"{column}={value}:" for column, value in self.where)
        return condition + (",".join(self.dims) if self.dims else "total")

    def answers(self, needed: frozenset[str], fixed: Mapping[str, object]) -> bool:
        """Whether this marginal holds every count a question grouped or filtered by
        ``needed`` (with ``fixed`` equality filters already applied) asks for."""
        for column, value in self.where:
            if fixed.get(column) != value:
                return False
        conditioned = {column for column, _ in self.where}
        return needed - conditioned <= set(self.dims)


def _full(kind: str) -> Marginal:
    return Marginal(kind, wire.KINDS[kind].dimension_names)


def _unique(marginals: tuple[Marginal, ...]) -> tuple[Marginal, ...]:
    # A table with no dimensions has its total and its full cross-product as one cell.
    return tuple(dict.fromkeys(marginals))


_ENTRY = (("entry", 1),)

MARGINALS: Final[dict[str, tuple[Marginal, ...]]] = {
    "pageview": _unique(
        (
            Marginal("pageview", ()),
            Marginal("pageview", ("route",)),
            Marginal("pageview", ("referrer",)),
            Marginal("pageview", ("utm_source", "utm_medium", "utm_campaign")),
            Marginal("pageview", (), _ENTRY),
            Marginal("pageview", ("route",), _ENTRY),
            Marginal("pageview", ("referrer",), _ENTRY),
            _full("pageview"),
        )
    ),
    "request": _unique(
        (
            Marginal("request", ("status",)),
            Marginal("request", ("route", "status")),
            Marginal("request", ("route", "latency")),
            _full("request"),
        )
    ),
    "visit": _unique(
        (
            Marginal("visit", ("pages",)),
            Marginal("visit", ("duration",)),
            _full("visit"),
        )
    ),
    "event": _unique(
        (
            Marginal("event", ("name",)),
            Marginal("event", ("name", "props")),
            Marginal("event", ("name", "route")),
            _full("event"),
        )
    ),
    "bot": _unique((Marginal("bot", ()), _full("bot"))),
}


@dataclass(frozen=True, slots=True)
class Effect:
    """What removing one unit can do to one marginal of one table, in the worst case.

    ``squared`` is the squared L2 change of the marginal's cells (what the Gaussian noise
    must cover); ``new_cells`` how many cells it can make appear that hold nothing else
    (what partition selection must cover); ``largest`` the most such a cell can hold.
    """

    squared: int
    new_cells: int
    largest: int = 1


WeightRule = Callable[[Marginal], Effect]


def _one_record(marginal: Marginal) -> Effect:
    return Effect(1, 1)


def _pageview(marginal: Marginal) -> Effect:
    # With visits on, an entry is a visit's first pageview: removing it makes the next
    # pageview of the visit the entry, so that one moves too wherever entries are kept
    # apart (the full cross-product) or selected (the entry marginals).
    # The two pageviews may lie in different hours or cells, so even the entries' total
    # changes in two places. Where entries are kept apart, a page load removed mid-visit
    # can also split the visit: it and the next pageview may share a cell (-2) while the
    # next one turns up as an entry (+1).
    if "entry" in marginal.dims:
        return Effect(5, 2)
    if marginal.where:
        return Effect(2, 2)
    return Effect(1, 1)


def _visit(marginal: Marginal) -> Effect:
    # Removing a page load in the middle of a visit can split it in two: the visit's
    # record leaves its cell (-1) and two records arrive, possibly in one new cell (+2).
    return Effect(5, 2, largest=2)


@dataclass(frozen=True, slots=True)
class Unit:
    """A protected unit: what one person's single action adds to the released tables.

    Each profile is one way the unit can show up (a request is either a page load of a
    person or a bot's), mapping each table it touches to the worst-case effect on each
    of that table's marginals when the unit is removed. The budget must cover the
    costliest profile.
    """

    name: str
    description: str
    profiles: tuple[Mapping[str, WeightRule], ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for profile in self.profiles for kind in profile)

    def _effects(self, profile: Mapping[str, WeightRule]) -> list[Effect]:
        return [rule(m) for kind, rule in profile.items() for m in MARGINALS[kind]]

    def releases(self) -> int:
        """How many cells one unit can make appear, over all marginals and resolutions."""
        return len(RESOLUTIONS) * max(
            sum(e.new_cells for e in self._effects(p)) for p in self.profiles
        )

    def load(self) -> int:
        """The total squared sensitivity, which the budget is divided by."""
        return len(RESOLUTIONS) * max(
            sum(e.squared for e in self._effects(p)) for p in self.profiles
        )

    def largest_new_cell(self) -> int:
        """The most a cell that exists only because of this unit can hold."""
        return max(e.largest for p in self.profiles for e in self._effects(p))


UNITS: Final[dict[str, Unit]] = {
    "request": Unit(
        "request",
        "one request to the site: its request record, and either its pageview record "
        "(with what it changes about which pageview of its visit is the entry) and its "
        "effect on the visit it belongs to (which it can split in two), or its bot record",
        (
            {"request": _one_record, "pageview": _pageview, "visit": _visit},
            {"request": _one_record, "bot": _one_record},
        ),
    ),
    "event": Unit("event", "one custom event", ({"event": _one_record},)),
}

UNIT_OF_KIND: Final[dict[str, Unit]] = {
    kind: unit for unit in UNITS.values() for kind in unit.kinds
}
