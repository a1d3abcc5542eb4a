"""What every command shares: finding the site file, and the shape of a registration."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from headcount_collector.config import SITE_ID_PATTERN

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "Formatter",
    "HelpFormatter",
    "config_path",
    "new_site_problem",
    "unknown_site",
]

CONFIG_ENV = "HEADCOUNT_CONFIG"
# Where `init` writes by default, and so where every other command looks by default.
DEFAULT_CONFIG = "headcount.toml"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; on/off flags need none."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if isinstance(action.default, bool) or action.default in (None, [], ""):
            return action.help
        return super()._get_help_string(action)


Formatter = type[HelpFormatter]


def config_path(value: str | None) -> Path:
    """``--config``, else ``$HEADCOUNT_CONFIG``, else ``./headcount.toml`` if it exists."""
    given = value or os.environ.get(CONFIG_ENV)
    if given:
        return Path(given)
    default = Path(DEFAULT_CONFIG)
    if default.exists():
        return default
    raise SystemExit(
        f"headcount-collector: no site file: pass --config, set {CONFIG_ENV}, or create "
        f"./{DEFAULT_CONFIG} with: headcount-collector init"
    )


def unknown_site(path: Path, site_id: str, known: list[str]) -> ValueError:
    """A site id that is not in the file: a mistyped argument, not a bad file."""
    listed = ", ".join(known) if known else "none"
    return ValueError(f"{path} has no site with id {site_id!r}; its sites: {listed}")


def new_site_problem(site_id: str, timezone: str, id_flag: str = "") -> str | None:
    """Why a site about to be written cannot have this id or time zone, or None.

    ``id_flag`` is the option the id came from (``--site``), empty when it was positional.
    """
    if not re.fullmatch(SITE_ID_PATTERN, site_id):
        example = f", e.g. {id_flag} my-blog" if id_flag else ""
        return (
            f"{id_flag + ' ' if id_flag else ''}{site_id!r} is not a site id: use lower-case "
            "letters, digits, '-' and '_' (at most 64), starting with a letter or digit" + example
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return (
            f"--timezone {timezone!r} is not an IANA time zone "
            "(e.g. Europe/Berlin, America/New_York, UTC)"
        )
    return None
