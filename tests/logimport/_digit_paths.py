"""Sample paths for the digit-shape router tests, each with its digits drawn again."""

from __future__ import annotations

import random


def paths_like(samples: list[str], rng: random.Random) -> list[str]:
    """``samples``, each also five times with its digits drawn again (one digit for one)."""
    found = list(samples)
    for path in samples:
        for _ in range(5):
            found.append("".join(str(rng.randrange(10)) if c.isdigit() else c for c in path))
    return found
