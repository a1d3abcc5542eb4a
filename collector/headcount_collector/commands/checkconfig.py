"""``check-config``: load the site file exactly as ``serve`` would, and say what it holds."""

from __future__ import annotations

import argparse
from typing import Any

from headcount_collector.commands._common import Formatter, config_path
from headcount_collector.config import load_sites

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    sites = load_sites(path)  # raises ConfigError, printed by main with exit code 2
    print(f"{path}: OK, {len(sites)} site(s)")
    for site in sites:
        events = ", ".join(sorted(site.events)) or "none"
        policy = site.policy
        # The setting that decides what readers can learn leads the line.
        release = (
            f"sealed noise (epsilon {policy.epsilon:g}, delta {policy.delta:g})"
            if policy.noise
            else "EXACT COUNTS (exact_counts = true: no noise, see the README's Privacy)"
        )
        print(
            f"  {site.id}: {release}, timezone {site.timezone.key}, k={site.k}, hourly rows "
            f"{site.hourly_days} days, daily rows {site.keep_days} days, events: {events}"
        )
    return 0


def register(
    sub: argparse._SubParsersAction[Any], formatter: Formatter, *, config_help: str
) -> None:
    parser = sub.add_parser(
        "check-config",
        help="check the site file as serve would, without starting anything",
        formatter_class=formatter,
    )
    parser.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    parser.set_defaults(run=_run)
