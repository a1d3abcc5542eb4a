"""exit_spool: an exiting process leaves the hours it still holds for the app's next
process, rather than sending them at once and so timing its own exit."""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from headcount import Tracker
from headcount.testing import RecordingCollector
from headcount.wire import Request
from headcount_collector._processes import free_port

from .conftest import BROWSER, HOUR, page

TOKEN = "spool-token"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_tracker(
    collector: RecordingCollector, spool: Path, clock: Clock, token: str = TOKEN
) -> Tracker:
    return Tracker(
        "http://collector.test", token, transport=collector.transport(), flush_interval=86400,
        exit_spool=str(spool), clock=clock, visits=False,
    )  # fmt: skip


def spooled_files(spool: Path) -> list[Path]:
    return sorted(spool.glob("*/*.json"))


def test_an_exiting_process_leaves_its_held_hours_for_the_next_to_send_at_their_moment(
    tmp_path: Path,
) -> None:
    collector = RecordingCollector(write_token=TOKEN)
    spool = tmp_path / "spool"
    clock = Clock(HOUR + 600)
    first = make_tracker(collector, spool, clock)
    for route in ("/clinic/testing", "/", "/"):
        first.record_request(page(route=route, user_agent=BROWSER))
    assert first.shutdown(2)
    # Nothing left at exit: the hour is not due, and its arrival would time the exit.
    assert collector.batches == []
    (left,) = spooled_files(spool)
    assert stat.S_IMODE(left.stat().st_mode) == 0o600
    assert stat.S_IMODE(left.parent.stat().st_mode) == 0o700
    assert BROWSER not in left.read_text()  # coarse keys only, as the wire has them

    # Another app (another token) on the same directory never takes it.
    other = make_tracker(collector, spool, clock, token="another-token")
    try:
        assert other._state.collect("due") == []
        assert spooled_files(spool) == [left]
    finally:
        other.shutdown(1)

    second = make_tracker(collector, spool, clock)
    try:
        assert second._state.collect("due") == []  # taken over, still held
        assert spooled_files(spool) == []
        assert sum(r.n for r in second.peek() if isinstance(r, Request)) == 3
        clock.now = HOUR + 2 * 3600  # past any moment of the next hour
        sent = second._state.collect("due")
        assert {(r.route, r.n) for r in sent if isinstance(r, Request)} == {
            ("/clinic/testing", 1),
            ("/", 2),
        }
    finally:
        second.shutdown(1)


def test_an_hour_already_due_at_exit_is_sent_then(tmp_path: Path) -> None:
    collector = RecordingCollector(write_token=TOKEN)
    spool = tmp_path / "spool"
    clock = Clock(HOUR + 600)
    tracker = make_tracker(collector, spool, clock)
    tracker.record_request(page(route="/", user_agent=BROWSER))
    tracker._state.collect("due")  # now held, to leave in the next hour
    clock.now = HOUR + 2 * 3600 - 1  # its moment has come
    tracker.record_request(page(route="/later", user_agent=BROWSER))
    assert tracker.shutdown(2)
    assert collector.counts(Request, "route") == {("/",): 1}
    assert len(spooled_files(spool)) == 1  # /later's hour is still held


def test_a_spool_that_cannot_be_written_sends_at_exit_rather_than_lose(
    tmp_path: Path,
) -> None:
    collector = RecordingCollector(write_token=TOKEN)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("", encoding="utf-8")
    tracker = make_tracker(collector, blocked, Clock(HOUR + 600))
    tracker.record_request(page(route="/", user_agent=BROWSER))
    assert tracker.shutdown(2)
    assert collector.counts(Request, "route") == {("/",): 1}
    assert tracker.stats().errors == 1


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        # A key the wire schema refuses (an e-mail address as a route): never sent.
        json.dumps(
            {
                "version": 1,
                "windows": [
                    {
                        "hour": HOUR,
                        "release_at": HOUR + 4000,
                        "counts": [
                            [["request", HOUR, "/u/jane@example.com", "GET", "2xx", "<10ms"], 1]
                        ],
                    }
                ],
            }
        ).encode(),
        json.dumps({"version": 2, "windows": []}).encode(),
    ],
)
def test_a_spooled_file_that_is_not_what_a_process_left_is_dropped(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    collector = RecordingCollector(write_token=TOKEN)
    spool = tmp_path / "spool"
    tracker = make_tracker(collector, spool, Clock(HOUR + 600))
    assert tracker._state.spool is not None
    tracker._state.spool.path.mkdir(parents=True)
    (tracker._state.spool.path / "1-x.json").write_bytes(content)
    try:
        with caplog.at_level("WARNING", logger="headcount"):
            assert tracker._state.collect("due") == []
        assert tracker.peek() == []
        assert spooled_files(spool) == []
        assert "could not be read and was dropped" in caplog.text
    finally:
        tracker.shutdown(1)


APP = textwrap.dedent(
    """
    import os

    from headcount import Tracker
    from headcount.integrations.wsgi import HeadcountMiddleware

    def pages(environ, start_response):
        environ["headcount.route"] = "/"
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>hi</p>"]

    tracker = Tracker(os.environ["COLLECTOR"], "spool-token", exit_spool=os.environ["SPOOL"],
                      visits=False)
    app = HeadcountMiddleware(pages, tracker)
    """
)


@pytest.fixture
def recycled_worker(tmp_path: Path) -> Iterator[tuple[RecordingCollector, Path, int]]:
    """gunicorn with one worker ended after every 3 requests, as --max-requests does."""
    (tmp_path / "spool_app.py").write_text(APP, encoding="utf-8")
    collector = RecordingCollector(write_token=TOKEN)
    spool = tmp_path / "spool"
    port = free_port()
    with collector.serve() as url:
        env = {**os.environ, "COLLECTOR": url, "SPOOL": str(spool)}
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "--max-requests", "3",
             "-b", f"127.0.0.1:{port}", "spool_app:app"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield collector, spool, port
        finally:
            server.terminate()
            server.wait(20)


def _get(port: int) -> int:
    deadline = time.monotonic() + 20
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/", headers={"User-Agent": BROWSER})
            status = connection.getresponse().status
            connection.close()
            return status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_a_worker_ended_after_its_requests_sends_nothing_that_times_them(
    recycled_worker: tuple[RecordingCollector, Path, int],
) -> None:
    """A review timed a visitor's request to the millisecond: gunicorn ended the worker
    right after it, and the exit flush sent the hour's counts at once. With exit_spool
    the worker leaves them for the next one, which holds them to their moment."""
    collector, spool, port = recycled_worker
    for _ in range(7):  # the worker is replaced twice
        assert _get(port) == 200
    time.sleep(1.5)  # the worker that served the last requests has exited
    assert collector.batches == []
    # What the exited workers left is there or already taken over by their successor;
    # either way nothing is sent before its hour's moment.
    for path in spooled_files(spool):
        assert json.loads(path.read_bytes())["version"] == 1
