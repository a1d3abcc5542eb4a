"""Database URLs as the CLI takes them: resolved, described for the log, opened with hints.

A relative SQLite path used to be resolved against whatever directory ``serve`` or
``purge`` was started from, so starting from elsewhere quietly created a new, empty
database. The CLI now turns every SQLite path into an absolute one before anything opens
it and prints it at start, together with whether the file already existed.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from headcount_collector.stores import Store, open_store

__all__ = [
    "DEFAULT_DB_URL",
    "describe_db",
    "open_checked",
    "open_existing",
    "resolve_db_url",
    "sqlite_file",
]

# The default database: a file in the directory the command is started from. Printed
# with its absolute path at start, so it can never be created somewhere unnoticed.
DEFAULT_DB_URL = "sqlite:///./headcount.sqlite3"

_POSTGRES_SCHEMES = ("postgresql", "postgres")


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (relative to the current directory), else None."""
    parsed = urlsplit(url)
    if parsed.scheme != "sqlite":
        return None
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if not path:
        raise ValueError("a sqlite URL needs a file path, e.g. sqlite:///headcount.sqlite3")
    return Path(path)


def resolve_db_url(url: str) -> str:
    """``url`` with a SQLite path made absolute; other URLs unchanged. Checks the scheme."""
    parsed = urlsplit(url)
    if parsed.scheme in _POSTGRES_SCHEMES:
        return url
    file = sqlite_file(url)
    if file is None:
        raise ValueError(
            "the database URL must start with sqlite:/// or postgresql:// "
            f"(got scheme {parsed.scheme or '(none)'!r})"
        )
    absolute = file.expanduser().resolve()
    query = f"?{parsed.query}" if parsed.query else ""
    return f"sqlite:///{absolute}{query}"


def describe_db(url: str) -> str:
    """Where the data lives, for the log: never a password."""
    file = sqlite_file(url)
    if file is not None:
        absolute = file.expanduser().resolve()
        state = "existing file" if absolute.exists() else "new file, created now"
        return f"SQLite database {absolute} ({state})"
    parsed = urlsplit(url)
    host = parsed.hostname or "local socket"
    port = f":{parsed.port}" if parsed.port else ""
    name = parsed.path.lstrip("/") or "(default database)"
    user = f" as {parsed.username}" if parsed.username else ""
    return f"PostgreSQL database {name!r} on {host}{port}{user}"


def open_checked(url: str) -> Store:
    """``open_store`` with an install hint instead of a missing-module traceback."""
    try:
        return open_store(url)
    except ModuleNotFoundError as exc:
        if urlsplit(url).scheme not in _POSTGRES_SCHEMES or not (exc.name or "").startswith(
            "psycopg"
        ):
            raise
        raise ValueError(
            "a postgresql:// database needs the psycopg driver: "
            "pip install 'headcount[postgres]' (from a clone: pip install -e '.[postgres]')"
        ) from None


def open_existing(url: str) -> Store:
    """``open_checked`` for commands that only read or tidy data (purge, export): a
    SQLite file that does not exist is a wrong path, never a new database."""
    file = sqlite_file(url)
    if file is not None and not file.expanduser().exists():
        raise ValueError(
            f"no database at {file.expanduser().resolve()}; check --db (a relative "
            "sqlite:/// path is relative to the current directory)"
        )
    return open_checked(url)
