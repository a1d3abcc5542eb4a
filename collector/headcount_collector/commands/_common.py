"""What every command shares: finding the site file, and the shape of a registration."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG", "Formatter", "HelpFormatter", "config_path"]

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
