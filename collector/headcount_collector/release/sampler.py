"""Exact integer noise: discrete Laplace and discrete Gaussian, with no floating point.

Every step works on integers and ``Fraction``s and draws its randomness as uniform
integers from the operating system (``secrets.randbelow``). Textbook Laplace noise over
doubles leaks the true value through the low bits of the result; rational arithmetic
and rejection sampling make every output probability exactly the one the proofs assume
(Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential Privacy", 2020,
algorithms 1-3).

Running time depends on the draw, so noise is never drawn while answering a query:
sealing draws a pool ahead of time and spends it (see ``sealing``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from fractions import Fraction
from math import isqrt

__all__ = [
    "RandomBelow",
    "bernoulli",
    "bernoulli_exp",
    "discrete_gaussian",
    "discrete_laplace",
]

# Draws a uniform integer in [0, n). Swappable so tests can count or replay draws.
RandomBelow = Callable[[int], int]


def bernoulli(p: Fraction, randbelow: RandomBelow = secrets.randbelow) -> bool:
    """True with probability exactly ``p`` (0 <= p <= 1)."""
    if not 0 <= p <= 1:
        raise ValueError("p must be within [0, 1]")
    return randbelow(p.denominator) < p.numerator


def _bernoulli_exp_at_most_one(gamma: Fraction, randbelow: RandomBelow) -> bool:
    # exp(-gamma) = sum over k of (-gamma)^k / k!: the index of the first failure in a
    # run of Bernoulli(gamma / k) trials is odd with exactly that probability.
    k = 1
    while bernoulli(gamma / k, randbelow):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction, randbelow: RandomBelow = secrets.randbelow) -> bool:
    """True with probability exactly ``exp(-gamma)`` (gamma >= 0)."""
    if gamma < 0:
        raise ValueError("gamma must not be negative")
    whole = gamma.numerator // gamma.denominator
    for _ in range(whole):
        if not _bernoulli_exp_at_most_one(Fraction(1), randbelow):
            return False
    return _bernoulli_exp_at_most_one(gamma - whole, randbelow)


def discrete_laplace(scale: Fraction, randbelow: RandomBelow = secrets.randbelow) -> int:
    """An integer Y with P(Y = y) proportional to exp(-|y| / scale), scale > 0."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    t, s = scale.numerator, scale.denominator
    # With scale = t/s: X = floor((U + t*V) / s) for U uniform in [0, t) weighted by
    # exp(-U/t) and V geometric, is geometric with ratio exp(-1/scale); a random sign,
    # rejecting the negative zero, makes it two-sided.
    while True:
        u = randbelow(t)
        if not bernoulli_exp(Fraction(u, t), randbelow):
            continue
        v = 0
        while bernoulli_exp(Fraction(1), randbelow):
            v += 1
        magnitude = (u + t * v) // s
        negative = randbelow(2) == 1
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def discrete_gaussian(variance: Fraction, randbelow: RandomBelow = secrets.randbelow) -> int:
    """An integer Y with P(Y = y) proportional to exp(-y^2 / (2 * variance)), variance > 0."""
    if variance <= 0:
        raise ValueError("variance must be positive")
    # Integer part of sigma plus one: an integer square root keeps this float-free.
    t = _isqrt_floor(variance) + 1
    two_variance = 2 * variance
    while True:
        y = discrete_laplace(Fraction(t), randbelow)
        gamma = (abs(y) - variance / t) ** 2 / two_variance
        if bernoulli_exp(gamma, randbelow):
            return y


def _isqrt_floor(value: Fraction) -> int:
    """floor(sqrt(value)) for a non-negative fraction, exactly."""
    # floor(sqrt(p/q)) = floor(sqrt(p*q) / q) = isqrt(p*q) // q
    p, q = value.numerator, value.denominator
    return isqrt(p * q) // q
