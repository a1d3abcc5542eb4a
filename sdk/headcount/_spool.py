"""Counts a process leaves at exit for the next process of the same app (``exit_spool``).

Under the hourly schedule a process sends what it still holds as it exits, and so tells
the collector when it exited. A server that ends a worker after a number of requests
(gunicorn ``--max-requests``) ties that moment to a request. With a spool directory the
exiting process sends only what is due and writes the rest here, each hour with the
random moment it was to leave at; the next process of the app (the worker started in
its place, or a sibling's next collect) takes it over and sends it at that moment.

What is written is what would have been sent: coarse keys and counts, no more. Each app
(endpoint and write token) has a subdirectory of its own, named by a digest of both, so
apps that share a directory never send each other's counts. A file is taken by renaming
it first, so two processes never both send one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from headcount._table import Key, to_records
from headcount.wire import Record, record_problem

__all__ = ["ExitSpool", "HeldWindow"]

logger = logging.getLogger("headcount")

# One window: (its hour, when it was to leave, its counts).
HeldWindow = tuple[int, float, dict[Key, int]]

# A file is one exiting process's held hours: at most max_keys keys each, a few hours.
_MAX_FILE_BYTES: Final = 64 * 1024 * 1024
_FILES_PER_TAKE: Final = 64


class _Window(msgspec.Struct, forbid_unknown_fields=True):
    hour: int
    release_at: float
    counts: list[tuple[list[Any], int]]


class _SpoolFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    windows: list[_Window]


_DECODER: Final = msgspec.json.Decoder(_SpoolFile)
_ENCODER: Final = msgspec.json.Encoder()
# The wire schema's own checks, for the records a spooled file's keys make.
_RECORDS: Final = msgspec.json.Decoder(list[Record])


class ExitSpool:
    """One app's spool subdirectory under ``directory``."""

    def __init__(self, directory: str, endpoint: str, write_token: str) -> None:
        app = hashlib.sha256(f"{endpoint}\n{write_token}".encode()).hexdigest()[:24]
        self.path = Path(directory) / app

    def leave(self, windows: list[HeldWindow]) -> None:
        """Write ``windows`` for the next process; raises OSError when it cannot."""
        if not windows:
            return
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = _ENCODER.encode(
            _SpoolFile(
                version=1,
                windows=[
                    _Window(hour, release_at, [(list(key), n) for key, n in counts.items()])
                    for hour, release_at, counts in windows
                ],
            )
        )
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        partial = self.path / f"{name}.partial"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.path / f"{name}.json")

    def take(self) -> list[HeldWindow]:
        """Windows other processes left here, each file taken by this process alone."""
        taken: list[HeldWindow] = []
        for path in self._files():
            claimed = path.with_name(f"{path.stem}.{os.getpid()}.claimed")
            try:
                os.rename(path, claimed)
            except OSError:
                continue  # another process took it first
            try:
                taken += _read(claimed)
            except (OSError, LookupError, ValueError, TypeError, msgspec.MsgspecError) as exc:
                logger.warning(
                    "headcount: a spooled file of held counts could not be read and was "
                    "dropped: %s",
                    type(exc).__name__,
                )
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(claimed)
        return taken

    def _files(self) -> Iterator[Path]:
        try:
            names = sorted(os.listdir(self.path))
        except OSError:
            return
        for name in [n for n in names if n.endswith(".json")][:_FILES_PER_TAKE]:
            yield self.path / name


def _read(path: Path) -> list[HeldWindow]:
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise ValueError("spool file too large")
    spooled = _DECODER.decode(path.read_bytes())
    if spooled.version != 1:
        raise ValueError("unknown spool version")
    windows: list[HeldWindow] = []
    for window in spooled.windows:
        counts: dict[Key, int] = {}
        for raw, n in window.counts:
            key: Key = tuple(_tupled(value) for value in raw)
            if n <= 0:
                raise ValueError("a count that is not positive")
            counts[key] = counts.get(key, 0) + n
        # Every key must make a record the SDK would send, as if counted here.
        for record in _RECORDS.decode(_ENCODER.encode(to_records(counts.items()))):
            if record_problem(record) is not None:
                raise ValueError("a value the SDK never sends")
        windows.append((window.hour, window.release_at, counts))
    return windows


def _tupled(value: Any) -> Any:
    # JSON has no tuples; an event's properties are a tuple of (name, value) pairs.
    if isinstance(value, list):
        return tuple(_tupled(item) for item in value)
    return value
