"""The collector's exceptions, in one tree, converted to HTTP answers at the app boundary."""

from __future__ import annotations

import re

__all__ = [
    "CollectorError",
    "ConfigError",
    "IngestRejected",
    "QueryRejected",
    "StoreUnavailable",
    "shown_field_name",
    "split_validation_error",
]


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""


class ConfigError(CollectorError):
    """The site file or a setting is wrong; the process must not start."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        # A problem of the whole file (unreadable, not TOML) has no key to name.
        super().__init__(f"{file}: {key}: {problem}" if key else f"{file}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class IngestRejected(CollectorError):
    """A batch is refused as a whole; nothing from it is stored."""

    def __init__(self, status: int, error: str, path: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.path = path


class QueryRejected(CollectorError):
    """A query parameter is invalid; ``parameter`` names it."""

    def __init__(self, parameter: str, error: str) -> None:
        super().__init__(f"{parameter}: {error}")
        self.parameter = parameter
        self.error = error


class StoreUnavailable(CollectorError):
    """The database cannot take a write now (locked, disk full); the client should retry."""


_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}\Z")


def shown_field_name(name: str) -> str | None:
    """``name`` if an error may show it (it reads as a field's name), else None: a key a
    sender chose can itself be the identifier being refused, and is never echoed."""
    return name if _SAFE_NAME.match(name) else None


def split_validation_error(text: str) -> tuple[str, str]:
    """A msgspec validation message as (problem, JSON path of the offending field)."""
    message, _, where = text.partition(" - at `")
    path = where.rstrip("`") or "$"
    # Never echo a submitted value back: it may be exactly the identifier being refused.
    for prefix in ("Invalid enum value", "Invalid value"):
        if message.startswith(prefix):
            message = prefix + "; see /v1/schema for the accepted values"
    # msgspec reports unknown and missing fields at the enclosing object; point at the
    # field itself, which is what a user needs to find.
    if "` in `" in path:
        # A dict key: msgspec says "at `key` in `$.records[0].props`"; point at the dict.
        path = path.split("` in `", 1)[1]
    for marker in ("unknown field `", "missing required field `"):
        if marker in message:
            name = message.split(marker, 1)[1].split("`", 1)[0]
            if shown_field_name(name) is not None:
                path = f"{path}.{name}"
            else:
                # A field name can itself be the identifier being refused: don't echo it.
                message = message.split(marker, 1)[0] + "an unknown field (its name is not shown)"
    return message, path
