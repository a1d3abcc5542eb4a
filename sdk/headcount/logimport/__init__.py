"""Access-log import: count a log's history through the live SDK's rules.

``headcount import --endpoint URL --write-token TOKEN [--app MODULE:ATTR |
--django-settings MOD] [--format ...] FILE...``; see ``headcount import --help``.
"""

from __future__ import annotations

from headcount.logimport._cli import main
from headcount.logimport._formats import FORMAT_NAMES, parser_for
from headcount.logimport._importer import BadLogLine, Importer, ImportFailed, ImportSummary
from headcount.logimport._reader import LineSource
from headcount.logimport._routes import load_resolver

__all__ = [
    "FORMAT_NAMES",
    "BadLogLine",
    "ImportFailed",
    "ImportSummary",
    "Importer",
    "LineSource",
    "load_resolver",
    "main",
    "parser_for",
]
