"""The mark that tells the tracker, on every request, whether it runs in a forked child."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from collections.abc import Callable

import pytest

from headcount._forks import LiveMark, _PidMark, new_live_mark

MARKS: dict[str, Callable[[], LiveMark]] = {"page": new_live_mark, "pid": _PidMark}
# Like uWSGI: through libc, so CPython's fork hooks never run.
FORKS: dict[str, Callable[[], int]] = {
    "os.fork": os.fork,
    "libc fork": ctypes.PyDLL(None).fork,
}


def seen_in_child(mark: LiveMark, fork: Callable[[], int]) -> int:
    """What ``mark[0]`` reads in a child forked now (its exit status carries it)."""
    pid = fork()
    if pid == 0:
        os._exit(10 + bool(mark[0]))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) - 10


@pytest.mark.parametrize("fork", FORKS.values(), ids=FORKS.keys())
@pytest.mark.parametrize("make", MARKS.values(), ids=MARKS.keys())
def test_a_set_mark_reads_unset_in_a_forked_child_and_set_in_the_parent(
    make: Callable[[], LiveMark], fork: Callable[[], int]
) -> None:
    mark = make()
    assert not mark[0]
    mark[0] = 1
    assert mark[0]
    assert seen_in_child(mark, fork) == 0
    assert mark[0]
    assert seen_in_child(mark, fork) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux kernel feature")
def test_on_linux_the_mark_is_a_page_the_kernel_wipes_not_a_system_call() -> None:
    assert isinstance(new_live_mark(), mmap.mmap)
