"""The mark that tells the tracker, on every request, whether it runs in a forked child."""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import subprocess
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


# Where madvise answers success without acting (QEMU's user mode before 8.1 answers every
# advice so; a sandbox's filter may do it for one), a forked child would read its
# parent's mark as set. A real seccomp filter makes this kernel do just that, in a fresh
# interpreter: madvise returns 0 and nothing is done.
SWALLOW_MADVISE = r"""
import ctypes, os, signal, struct, sys
def swallow_madvise(only_advice):
    libc = ctypes.CDLL(None, use_errno=True)
    ins = lambda code, jt, jf, k: struct.pack("HBBI", code, jt, jf, k)
    prog = b"".join([
        ins(0x20, 0, 0, 4), ins(0x15, 0, 5, 0xC000003E),  # x86_64, else allow
        ins(0x20, 0, 0, 0), ins(0x15, 0, 3, 28),  # madvise, else allow
        ins(0x20, 0, 0, 32), ins(0x15, 0, 0 if only_advice is None else 1, only_advice or 0),
        ins(0x06, 0, 0, 0x00050000),  # answer 0, do nothing
        ins(0x06, 0, 0, 0x7FFF0000),  # allow
    ])
    buf = ctypes.create_string_buffer(prog)
    class Filter(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    program = Filter(len(prog) // 8, ctypes.addressof(buf))
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(program), 0, 0) == 0  # PR_SET_SECCOMP, filter
swallow_madvise({only!r})
import headcount
tracker = headcount.Tracker("http://127.0.0.1:9", "tok", flush_interval=86400)
info = headcount.RequestInfo("GET", "/x", 200, 0.01, user_agent="Mozilla/5.0 (X11) Firefox/125")
tracker.record_request(info)
"""
RAW_FORK_HOLDING_THE_LOCK = r"""
lock = tracker._state.table._lock
lock.acquire()
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    signal.alarm(5)  # a child that took its parent's lock would wait for ever
    tracker.record_request(info)
    os._exit(0 if (tracker._state.pid, tracker.stats().recorded) == (os.getpid(), 1) else 1)
lock.release()
_, status = os.waitpid(pid, 0)
tracker.shutdown(0.1)
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""
OS_FORK_STARTS_A_SENDER = r"""
pid = os.fork()
if pid == 0:
    tracker.record_request(info)
    os._exit(0 if tracker._state.sender.started else 1)
_, status = os.waitpid(pid, 0)
tracker.shutdown(0.1)
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""
SWALLOWED = {"advice 18 swallowed": 18, "every advice swallowed (QEMU)": None}
CHILDREN = {"libc fork": RAW_FORK_HOLDING_THE_LOCK, "os.fork": OS_FORK_STARTS_A_SENDER}


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not sys.platform.startswith("linux"),
    reason="the system call filter is written for x86_64 Linux",
)
@pytest.mark.parametrize("child", CHILDREN.values(), ids=CHILDREN.keys())
@pytest.mark.parametrize("only", SWALLOWED.values(), ids=SWALLOWED.keys())
def test_a_forked_child_starts_over_where_madvise_answers_without_acting(
    only: int | None, child: str
) -> None:
    code = SWALLOW_MADVISE.replace("{only!r}", repr(only)) + child
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
