"""Lines from plain files, gzip files and standard input, or a growing file followed
across logrotate's rotations; every byte read also feeds the content fingerprint."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Final

__all__ = ["LineSource"]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_POLL_SECONDS: Final = 0.2
# Read, hashed and decoded this much at a time: whole lines, so a block decodes exactly as
# its lines would one by one.
_BLOCK_BYTES: Final = 1 << 20


class LineSource:
    """Reads the inputs in order. ``fingerprint`` is a digest of every byte read so far,
    so the same log content gives the same batch ids however it is named or compressed
    (gzip files are hashed after decompression)."""

    def __init__(
        self,
        paths: list[str],
        *,
        follow: bool = False,
        idle_exit: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._paths = paths
        self._follow = follow
        self._idle_exit = idle_exit
        self._sleep = sleep
        self._hash = hashlib.sha256()
        self.bytes_read = 0  # on disk: compressed bytes for gzip files
        self.total_bytes = sum(_size(path) for path in paths)
        self.current = ""

    @property
    def fingerprint(self) -> str:
        return self._hash.hexdigest()

    def lines(self) -> Iterator[tuple[str, int, bytes]]:
        """``(path, line number, line bytes)`` for every line of every input."""
        for path in self._paths:
            self.current = path
            if self._follow and path != "-":
                # Without the quiet-time ticks (empty lines), which only ``blocks`` passes on.
                yield from (item for item in self._follow_file(path) if item[2])
            else:
                with _open(path) as stream:
                    yield from self._read(path, stream)

    def blocks(self) -> Iterator[tuple[str, int, list[str]]]:
        """``(path, number of the first line, lines)``: the same lines as ``lines``,
        decoded (invalid UTF-8 replaced) and without their line ends, many at a time."""
        for path in self._paths:
            self.current = path
            if self._follow and path != "-":
                for _, number, line in self._follow_file(path):
                    # A tick while the log is quiet is an empty block.
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    yield path, number, [text] if line else []
            else:
                with _open(path) as stream:
                    yield from self._read_blocks(path, stream)

    def _read_blocks(self, path: str, stream: IO[bytes]) -> Iterator[tuple[str, int, list[str]]]:
        update = self._hash.update
        number = 1
        rest = b""
        while True:
            chunk = stream.read(_BLOCK_BYTES)
            if not chunk:
                break
            update(chunk)
            self.bytes_read += len(chunk)
            data = rest + chunk if rest else chunk
            cut = data.rfind(b"\n") + 1
            if not cut:
                rest = data
                continue
            rest = data[cut:]
            text = data[:cut].decode("utf-8", "replace")
            lines = text.split("\n")
            lines.pop()  # after the last line end
            if "\r" in text:
                lines = [line.rstrip("\r") for line in lines]
            yield path, number, lines
            number += len(lines)
        if rest:
            yield path, number, [rest.decode("utf-8", "replace").rstrip("\r")]

    def _read(self, path: str, stream: IO[bytes]) -> Iterator[tuple[str, int, bytes]]:
        update = self._hash.update
        for number, line in enumerate(stream, 1):
            update(line)
            self.bytes_read += len(line)
            yield path, number, line

    def _follow_file(self, path: str) -> Iterator[tuple[str, int, bytes]]:
        """Read to the end, then wait for more, yielding an empty line each time it waits.
        A rotated file (a new inode at ``path``)
        is read to its end before the new one is opened; a truncated one (copytruncate)
        is read again from the start."""
        stream: IO[bytes] = open(path, "rb")  # noqa: SIM115 - reopened across rotations
        number = 0
        idle_since = time.monotonic()
        pending = b""
        try:
            while True:
                chunk = stream.readline()
                if chunk:
                    idle_since = time.monotonic()
                    pending += chunk
                    if not pending.endswith(b"\n"):
                        continue  # a line still being written
                    number += 1
                    line, pending = pending, b""
                    self._hash.update(line)
                    self.bytes_read += len(line)
                    yield path, number, line
                    continue
                replaced = _replaced(path, stream)
                if replaced is not None:
                    stream.close()
                    stream = replaced
                    pending = b""
                    continue
                if self._idle_exit is not None and time.monotonic() - idle_since >= self._idle_exit:
                    return
                yield path, number, b""
                try:
                    self._sleep(_POLL_SECONDS)
                except KeyboardInterrupt:
                    return  # Ctrl-C ends following; what was read is still counted and sent
        finally:
            stream.close()


def _replaced(path: str, stream: IO[bytes]) -> IO[bytes] | None:
    """The file now at ``path`` when it is no longer the one being read (rotated, or
    truncated in place), else None."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return None  # rotated away, the new file not created yet
    current = os.fstat(stream.fileno())
    if (now.st_ino, now.st_dev) != (current.st_ino, current.st_dev):
        return open(path, "rb")
    if now.st_size < stream.tell():
        stream.seek(0)
        return None
    return None


def _size(path: str) -> int:
    if path == "-":
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@contextlib.contextmanager
def _open(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer  # not ours to close
        return
    with open(path, "rb") as raw:
        if raw.read(2) == _GZIP_MAGIC:
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unpacked:
                yield unpacked  # type: ignore[misc]
            return
        raw.seek(0)
        yield raw
