"""Telling, on every request, whether this is still the process that started the sender.

A forked child must start over (a new table, thread and client), and not every server
forks through CPython's fork hooks (uWSGI's workers can come from a plain ``fork()``), so
the tracker checks on the request path itself. Asking for the process id is a system
call each time. On Linux the kernel can instead zero a page in every child it forks
(``MADV_WIPEONFORK``, Linux 4.14): one byte of such a page, set once the sender runs,
reads as zero in any child, however it was forked, for the cost of reading a byte.
Elsewhere the mark compares process ids, as before.
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import Final, Protocol

__all__ = ["LiveMark", "new_live_mark"]

# mmap names it from Python 3.13 on; the value is Linux's own (asm-generic/mman-common.h).
_MADV_WIPEONFORK: Final = getattr(mmap, "MADV_WIPEONFORK", 18)


class LiveMark(Protocol):
    """``mark[0]`` is true in the process that last did ``mark[0] = 1``, and false in
    any process forked from it (and before it is set)."""

    def __getitem__(self, index: int, /) -> int: ...

    def __setitem__(self, index: int, value: int, /) -> None: ...


class _PidMark:
    """Where the kernel cannot wipe a page on fork: the process id, compared each time."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = 0

    def __getitem__(self, index: int) -> int:
        return self._pid == os.getpid()

    def __setitem__(self, index: int, value: int) -> None:
        self._pid = os.getpid() if value else 0


def new_live_mark() -> LiveMark:
    """A mark that is not set: a page the kernel wipes in forked children, else a
    process id comparison."""
    if not sys.platform.startswith("linux"):
        return _PidMark()
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):
        return _PidMark()
    try:
        # A kernel older than 4.14 refuses the advice (EINVAL): it would copy the page.
        page.madvise(_MADV_WIPEONFORK)
    except (OSError, ValueError):
        page.close()
        return _PidMark()
    return page
