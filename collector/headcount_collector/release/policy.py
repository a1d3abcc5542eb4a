"""A site's privacy parameters turned into noise and thresholds for every released cell.

The guarantee is stated in (epsilon, delta) per protected unit (see ``catalogue.UNITS``)
and accounted in zero-concentrated DP, where the releases a unit touches add up simply:
each cell gets discrete Gaussian noise of variance ``load / (2 rho)``, so the unit's
releases together cost ``rho``. Half of delta converts rho-zCDP into (epsilon, delta/2)
(Bun & Steinke 2016, prop. 1.3); the other half pays for partition selection: a cell
that exists only because of one unit is shown with probability at most
``delta / 2 / releases``, so open-ended labels (referrers, campaigns, routes) cannot be
revealed by merely appearing.

Floating point is fine here: it only derives parameters, rounded towards more noise and
higher thresholds; the noise itself is drawn exactly (``sampler``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Final

from headcount_collector.release.catalogue import UNIT_OF_KIND, UNITS, Unit

__all__ = [
    "DEFAULT_DELTA",
    "DEFAULT_EPSILON",
    "DEFAULT_SEAL_GRACE_HOURS",
    "ReleasePolicy",
    "UnitBudget",
    "release_policy",
    "rho_for",
]

DEFAULT_EPSILON: Final = 7.0
DEFAULT_DELTA: Final = 1e-6
# Counts of an hour arrive within it with the default immediate sending, and within
# the following hour with send_schedule="hourly"; one more hour covers retries.
DEFAULT_SEAL_GRACE_HOURS: Final = 2
# Two-sided 95 % interval of a sum of independent noisy cells.
Z95: Final = 1.959964


def rho_for(epsilon: float, delta: float) -> float:
    """The largest rho whose rho-zCDP implies (epsilon, delta)-DP."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError("need epsilon > 0 and 0 < delta < 1")
    log_term = math.log(1 / delta)
    return (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2


def _tail_at_least(variance: float, value: int) -> float:
    """P(Z >= value) for Z discrete Gaussian with this variance parameter."""
    sigma = math.sqrt(variance)
    reach = int(60 * sigma) + 60
    weights = [math.exp(-(x * x) / (2 * variance)) for x in range(-reach, reach + 1)]
    total = math.fsum(weights)
    return math.fsum(weights[value + reach :]) / total if value <= reach else 0.0


def _threshold(variance: float, per_release_delta: float, largest: int = 1) -> int:
    """The least T such that a cell holding ``largest`` reaches T with probability <=
    delta (largest: the most a cell that exists because of one unit can hold)."""
    value = largest
    while _tail_at_least(variance, value - largest) > per_release_delta:
        value += 1
    return value


@dataclass(frozen=True, slots=True)
class UnitBudget:
    unit: Unit
    # The noise variance of every cell of this unit's tables (exact, for the sampler).
    variance: Fraction
    # A noisy cell is shown only when it reaches this.
    threshold: int

    def error95(self, cells: int) -> float:
        """Half-width of the 95 % interval of a sum of ``cells`` noisy cells."""
        return self.error95_of(float(self.variance) * cells)

    @staticmethod
    def error95_of(variance: float) -> float:
        """Half-width of the 95 % interval of a sum whose noise has this variance."""
        return Z95 * math.sqrt(variance)


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    """How one site's numbers are released. ``noise=False`` is the explicit opt-out."""

    noise: bool
    epsilon: float
    delta: float
    k: int
    seal_grace_seconds: int
    rho: float
    budgets: dict[str, UnitBudget]

    def budget_for(self, kind: str) -> UnitBudget:
        return self.budgets[UNIT_OF_KIND[kind].name]

    @property
    def mu(self) -> float:
        """The Gaussian-DP parameter of one unit's releases taken together."""
        return math.sqrt(2 * self.rho)

    def best_guess_accuracy(self) -> float:
        """The highest probability with which anyone holding every released number can
        tell whether one given unit was counted, with even odds beforehand (mu-GDP)."""
        return 0.5 * (1 + math.erf(self.mu / 2 / math.sqrt(2))) + self.delta

    def describe(self) -> dict[str, object]:
        if not self.noise:
            return {
                "mode": "exact",
                "k": self.k,
                "warning": (
                    "this site opted out of noise: counts are exact, small counts are "
                    "only suppressed per response, and differences between responses "
                    "can reveal them"
                ),
            }
        return {
            "mode": "sealed-noise",
            "epsilon": self.epsilon,
            "delta": self.delta,
            "unit": {name: unit.description for name, unit in UNITS.items()},
            "mechanism": "discrete Gaussian noise, drawn once per cell when its hour or "
            "day is sealed; cells below a threshold on the noisy value are not shown",
            "noise_sd": {
                name: round(math.sqrt(float(b.variance)), 2) for name, b in self.budgets.items()
            },
            "threshold": {name: b.threshold for name, b in self.budgets.items()},
            "seal_grace_hours": self.seal_grace_seconds // 3600,
        }


@lru_cache(maxsize=256)
def release_policy(
    *,
    noise: bool = True,
    epsilon: float = DEFAULT_EPSILON,
    delta: float = DEFAULT_DELTA,
    k: int = 1,
    seal_grace_hours: int = DEFAULT_SEAL_GRACE_HOURS,
) -> ReleasePolicy:
    rho = rho_for(epsilon, delta / 2)
    budgets: dict[str, UnitBudget] = {}
    for name, unit in UNITS.items():
        # Rounded up to a thousandth: a little more noise than the budget needs, never less.
        variance = Fraction(math.ceil(unit.load() / (2 * rho) * 1000), 1000)
        threshold = _threshold(
            float(variance), delta / 2 / unit.releases(), unit.largest_new_cell()
        )
        budgets[name] = UnitBudget(unit, variance, max(threshold, k))
    return ReleasePolicy(noise, epsilon, delta, k, seal_grace_hours * 3600, rho, budgets)
