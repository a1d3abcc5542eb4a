"""Telling, on every request, whether this is still the process that started the sender.

A forked child must start over (a new table, thread and client), and not every server
forks through CPython's fork hooks (uWSGI's workers can come from a plain ``fork()``), so
the tracker checks on the request path itself. Asking for the process id is a system
call each time. On Linux the kernel can instead zero a page in every child it forks
(``MADV_WIPEONFORK``, Linux 4.14): one byte of such a page, set once the sender runs,
reads as zero in any child, however it was forked, for the cost of reading a byte. The
advice is trusted only once the kernel shows it took it. Elsewhere the mark compares
process ids, as before.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys
from typing import Final, Protocol

__all__ = ["LiveMark", "new_live_mark"]

# Linux's own value (asm-generic/mman-common.h); the mmap module does not name it.
_MADV_WIPEONFORK: Final = 18
# No kernel knows this advice: one that accepts it does not act on advice at all.
_NONSENSE_ADVICE: Final = -1


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
    if not sys.platform.startswith("linux") or not _kernel_wipes_pages():
        return _PidMark()
    page = _wiped_page()
    return _PidMark() if page is None else page


def _wiped_page() -> mmap.mmap | None:
    """A private page advised to be wiped on fork, or None where that is refused."""
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):
        return None
    try:
        # A kernel older than 4.14 refuses the advice (EINVAL): it would copy the page.
        page.madvise(_MADV_WIPEONFORK)
    except (OSError, ValueError):
        page.close()
        return None
    return page


@functools.cache
def _kernel_wipes_pages() -> bool:
    """Whether advice to wipe a page on fork is really taken, asked once per process.

    A success from madvise is not proof: an emulator (QEMU's user mode before 8.1)
    answers every advice with success and does nothing, and a sandbox's system call
    filter may answer success without calling the kernel. A child that read its parent's
    mark as its own would use the parent's table and lock. So a nonsense advice must be
    refused, and the kernel's own list of the page's flags must show "wf"."""
    page = _wiped_page()
    if page is None:
        return False
    try:
        try:
            page.madvise(_NONSENSE_ADVICE)
        except (OSError, ValueError):
            pass
        else:
            return False
        view = ctypes.c_char.from_buffer(page)
        address = ctypes.addressof(view)
        del view  # the page cannot close while a view of it is alive
        return "wf" in _vm_flags(address)
    except Exception:  # no /proc, an unexpected format: compare process ids instead
        return False
    finally:
        page.close()


def _vm_flags(address: int) -> list[str]:
    """The kernel's flags for the mapping that holds ``address`` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
        for line in smaps:
            head, _, _ = line.partition(" ")
            start, dash, end = head.partition("-")
            if dash and not head.endswith(":"):
                try:
                    inside = int(start, 16) <= address < int(end, 16)
                except ValueError:
                    inside = False
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    return []
