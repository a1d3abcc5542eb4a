"""``backup``: an online copy of a SQLite database, taken while the collector runs.

SQLite's backup API copies a consistent snapshot page by page, without stopping writers
for long. The copy is checked (``PRAGMA integrity_check``) before it is reported.
PostgreSQL has its own tools (``pg_dump``) and is refused with that hint.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from headcount_collector.commands._common import Formatter
from headcount_collector.database import DEFAULT_DB_URL, resolve_db_url, sqlite_file

__all__ = ["register"]

_PAGES_PER_STEP = 1024


def _run(args: argparse.Namespace) -> int:
    url = resolve_db_url(args.db)
    source_path = sqlite_file(url)
    if source_path is None:
        print(
            "headcount-collector: backup copies SQLite databases; for PostgreSQL use "
            "pg_dump (and give backups the same retention as the database)",
            file=sys.stderr,
        )
        return 2
    if not source_path.exists():
        print(f"headcount-collector: no database at {source_path}", file=sys.stderr)
        return 2
    destination = Path(args.destination).resolve()
    if destination.exists() and not args.force:
        print(f"headcount-collector: {destination} exists; pass --force", file=sys.stderr)
        return 1
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target, pages=_PAGES_PER_STEP)
            # The copy keeps the source's promise that deleted rows are really gone.
            target.execute("PRAGMA secure_delete = ON")
            check = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
    finally:
        source.close()
    if check != "ok":
        partial.unlink(missing_ok=True)
        print(f"headcount-collector: the copy failed its integrity check: {check}", file=sys.stderr)
        return 3
    os.chmod(partial, 0o600)
    os.replace(partial, destination)
    size = destination.stat().st_size
    print(f"backed up {source_path} to {destination} ({size} bytes, integrity ok)")
    return 0


def register(sub: argparse._SubParsersAction[Any], formatter: Formatter, *, db_help: str) -> None:
    parser = sub.add_parser(
        "backup",
        help="copy a SQLite database while the collector runs (online backup)",
        formatter_class=formatter,
    )
    parser.add_argument("destination", help="file to write the copy to")
    parser.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    parser.add_argument("--force", action="store_true", help="overwrite the destination")
    parser.set_defaults(run=_run)
