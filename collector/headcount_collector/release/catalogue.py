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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from headcount_collector.tables import TABLES

__all__ = [
    "MARGINALS",
    "RESOLUTIONS",
    "UNITS",
    "UNIT_OF_KIND",
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
    return Marginal(kind, TABLES[kind].dimensions)


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
class Unit:
    """A protected unit: what one person's single action adds to the released tables.

    Each profile is one way the unit can show up (a request is either a page load of a
    person or a bot's), mapping each table it touches to the squared L2 change in each
    of that table's marginals when the unit is removed: 1 where the unit is one counted
    record, 2 for visits, where one page load less moves the visit's record from one
    range cell to another. The budget must cover the costliest profile.
    """

    name: str
    description: str
    profiles: tuple[Mapping[str, int], ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for profile in self.profiles for kind in profile)

    def releases(self) -> int:
        """How many released cells one unit can touch over all marginals and resolutions."""
        return len(RESOLUTIONS) * max(
            sum(len(MARGINALS[kind]) for kind in profile) for profile in self.profiles
        )

    def load(self) -> int:
        """The total squared sensitivity, which the budget is divided by."""
        return len(RESOLUTIONS) * max(
            sum(weight * len(MARGINALS[kind]) for kind, weight in profile.items())
            for profile in self.profiles
        )


UNITS: Final[dict[str, Unit]] = {
    "request": Unit(
        "request",
        "one request to the site: its request record, and either its pageview record "
        "and its effect on the visit it belongs to, or its bot record",
        ({"request": 1, "pageview": 1, "visit": 2}, {"request": 1, "bot": 1}),
    ),
    "event": Unit("event", "one custom event", ({"event": 1},)),
}

UNIT_OF_KIND: Final[dict[str, Unit]] = {
    kind: unit for unit in UNITS.values() for kind in unit.kinds
}
