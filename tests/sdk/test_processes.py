"""Process-level behaviour: exit deadlines, fork safety, and the real collector."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from headcount import RequestInfo, Tracker
from headcount.testing import RecordingCollector
from headcount.wire import Pageview, Request
from tests._servers import CollectorProcess, free_port
from tests.conftest import WRITE_TOKEN

from .conftest import BROWSER, ClientTransport, page

pytestmark = pytest.mark.slow


@pytest.fixture
def served() -> Iterator[tuple[RecordingCollector, str]]:
    """A recording collector over real HTTP (forked and fresh processes send to it)."""
    collector = RecordingCollector()
    with collector.serve() as url:
        yield collector, url
    assert collector.rejected == []


def run_python(code: str) -> float:
    """Wall time of running ``code`` in a fresh interpreter; it must exit cleanly."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode()
    return elapsed


EXIT_SCRIPT = """
import headcount
tracker = headcount.Tracker({url!r}, "tok", enabled={enabled}, shutdown_timeout={deadline},
                            request_timeout=30, backoff_initial=0.01)
for _ in range(100):
    tracker.record_request(headcount.RequestInfo("GET", "/", 200, 0.01, user_agent="curl/8"))
"""


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("target", ["unused-port", "black-hole"])
def test_exit_is_bounded_by_shutdown_timeout(target: str, black_hole: str) -> None:
    url = black_hole if target == "black-hole" else f"http://127.0.0.1:{free_port()}"
    deadline = 1.0
    startup = run_python(EXIT_SCRIPT.format(url=url, enabled=False, deadline=deadline))
    elapsed = run_python(EXIT_SCRIPT.format(url=url, enabled=True, deadline=deadline))
    # Without the deadline the exit waits out the send's own timeout (10 s by default);
    # the slack is for two interpreter start-ups on a busy machine.
    assert elapsed < startup + deadline + 2.5, (elapsed, startup)


def test_forked_child_sends_only_its_own_counts(
    served: tuple[RecordingCollector, str],
) -> None:
    collector, url = served
    tracker = Tracker(url, "tok", flush_interval=86400)
    for _ in range(5):
        tracker.record_request(RequestInfo("GET", "/parent", 200, 0.01, user_agent=BROWSER))
    assert tracker.peek()  # the parent holds counts (and a running sender) at fork time

    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            inherited = tracker.peek()
            for _ in range(3):
                tracker.record_request(RequestInfo("GET", "/child", 200, 0.01, user_agent=BROWSER))
            sent = tracker.flush(5)
            stats = tracker.stats()
            if inherited == [] and sent and stats.recorded == 3 and stats.sent == 1:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    assert collector.counts(Request, "route") == {("/child",): 3}
    assert tracker.flush(5) is True
    assert collector.counts(Request, "route") == {("/child",): 3, ("/parent",): 5}
    assert tracker.stats().recorded == 5
    tracker.shutdown(1)


RAW_FORK_SCRIPT = """
import ctypes, os, sys
import headcount
from headcount.wire import Request

tracker = headcount.Tracker({url!r}, "tok", flush_interval=86400)
if {pid_mark!r}:
    from headcount._forks import _PidMark
    tracker._live = _PidMark()  # where the kernel cannot wipe a page on fork
info = headcount.RequestInfo("GET", "/x", 200, 0.01, user_agent="Mozilla/5.0 (X11) Firefox/125")
tracker.record_request(info)
# Like uWSGI: fork through libc, so Python's fork hooks never run, and do it while this
# process holds the count table's lock, which the child must never touch.
lock = tracker._state.table._lock
lock.acquire()
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    tracker.record_request(info)
    tracker.record_request(info)
    counts = sum(r.n for r in tracker.peek() if isinstance(r, Request))
    sent = tracker.flush(5)
    os._exit(0 if (counts, tracker.stats().recorded, sent) == (2, 2, True) else 1)
lock.release()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("pid_mark", [False, True], ids=["wiped page", "pid compared"])
def test_fork_without_hooks_is_caught_on_the_request_path(
    served: tuple[RecordingCollector, str], pid_mark: bool
) -> None:
    collector, url = served
    run_python(RAW_FORK_SCRIPT.format(url=url, pid_mark=pid_mark))
    # The child's two requests, then the parent's one, sent at its exit: never the
    # parent's count inside the child's batch.
    per_batch = sorted(
        sum(r.n for r in batch.records if isinstance(r, Request)) for batch in collector.batches
    )
    assert per_batch == [1, 2]


FIRST_SEND_SCRIPT = """
import sys
import headcount
tracker = headcount.Tracker({url!r}, "tok", flush_interval=86400, visits=False)
tracker.record_request(headcount.RequestInfo("GET", "/", 200, 0.01, user_agent="curl/8"))
before = set(sys.modules)
assert tracker.flush(10)
imported = sorted(set(sys.modules) - before)
tracker.shutdown(1)
sys.exit(f"the first send imported {{imported}}" if imported else 0)
"""


def test_the_sender_threads_first_send_imports_nothing(
    served: tuple[RecordingCollector, str],
) -> None:
    """A fork while the sender thread is importing would leave the child a module lock
    held for ever (its own first send then hangs), so the send path is imported before."""
    collector, url = served
    run_python(FIRST_SEND_SCRIPT.format(url=url))
    assert len(collector.batches) == 1


# --- the real collector ------------------------------------------------------------------


def stored_total(db_path: Path, table: str) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(
            conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM {table} WHERE res = 'h'").fetchone()[0]
        )
    finally:
        conn.close()


def test_sends_through_the_real_collector_app(tmp_path: Path, site_file: Path) -> None:
    from starlette.testclient import TestClient

    from headcount_collector.app import create_app
    from headcount_collector.config import Settings, load_sites
    from headcount_collector.stores import open_store
    from headcount_collector.tables import TABLES

    db_path = tmp_path / "collector.sqlite3"
    store = open_store(f"sqlite:///{db_path}")
    app = create_app(Settings(config_path=str(site_file)), store, load_sites(site_file))
    # As a context manager, so the app's lifespan (its group committer) runs.
    with TestClient(app) as client:
        tracker = Tracker(
            "http://testserver",
            WRITE_TOKEN,
            transport=ClientTransport(client),
            flush_interval=86400,
        )
        try:
            for _ in range(7):
                tracker.record_request(page(referer="https://www.google.com/"))
            tracker.record_request(page(user_agent="curl/8"))
            tracker.event("signup", route="/join", plan="pro")
            assert tracker.flush(10) is True
            stats = tracker.stats()
            assert (stats.sent, stats.dropped, stats.errors) == (1, 0, 0)
            assert stored_total(db_path, TABLES["request"].name) == 8
            assert stored_total(db_path, TABLES["pageview"].name) == 7
            assert stored_total(db_path, TABLES["bot"].name) == 1
            assert stored_total(db_path, TABLES["event"].name) == 1
        finally:
            tracker.shutdown(2)
    store.close()


def test_sends_over_a_real_socket_to_the_collector_server(
    collector_server: CollectorProcess,
) -> None:
    from headcount_collector.tables import TABLES

    tracker = Tracker(collector_server.url, WRITE_TOKEN, flush_interval=86400)
    for i in range(30):
        tracker.record_request(page(route=f"/p/<int:id>/{'ab'[i % 2]}"))
    assert tracker.flush(10) is True
    assert tracker.stats().sent == 1
    assert stored_total(collector_server.db_path, TABLES["request"].name) == 30
    assert stored_total(collector_server.db_path, TABLES["pageview"].name) == 30
    # A wrong token is refused (401) and stores nothing; the SDK keeps the batch for
    # when the token is fixed (tests/sdk/test_sender_failures.py) and says so.
    wrong = Tracker(collector_server.url, "hcw_wrong-token", flush_interval=86400)
    wrong.record_request(page())
    assert wrong.flush(5) is False
    assert (wrong.stats().dropped, wrong.stats().buffered) == (0, 1)
    assert stored_total(collector_server.db_path, TABLES["pageview"].name) == 30
    wrong.shutdown(1)
    tracker.shutdown(1)


def test_pageview_records_are_accepted_by_the_collector_schema() -> None:
    # Guards the two tests above from passing vacuously if kinds were renamed.
    assert Pageview.__struct_config__.tag == "pageview"
