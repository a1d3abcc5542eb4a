"""The CLI's management commands, one module each; ``cli`` registers them all."""

from __future__ import annotations

import argparse
from typing import Any

from headcount_collector.commands import backup, checkconfig, digest, export, sites
from headcount_collector.commands._common import Formatter

__all__ = ["register_all"]


def register_all(
    sub: argparse._SubParsersAction[Any], formatter: Formatter, *, config_help: str, db_help: str
) -> None:
    checkconfig.register(sub, formatter, config_help=config_help)
    digest.register(sub, formatter)
    sites.register(sub, formatter, config_help=config_help)
    export.register(sub, formatter, config_help=config_help, db_help=db_help)
    backup.register(sub, formatter, db_help=db_help)
