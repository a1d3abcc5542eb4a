"""``headcount_collector._processes``: what the demo, the tests and the benchmarks rely on
when they start a server (its failures name the server and show its log)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests._servers import (
    ServerFailed,
    accepts_connections,
    answers_http,
    free_port,
    spawn,
)


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_a_server_that_exits_before_it_is_ready_fails_with_its_code_and_log(
    tmp_path: Path,
) -> None:
    server = spawn("the broken server", python("print('no config'); exit(3)"), tmp_path / "log")
    with pytest.raises(ServerFailed) as failed:
        server.wait_until(lambda: False)
    assert "the broken server exited early with code 3" in str(failed.value)
    assert "no config" in str(failed.value)


def test_a_server_never_ready_is_killed_at_the_timeout(tmp_path: Path) -> None:
    server = spawn("the slow server", python("import time; time.sleep(60)"), tmp_path / "log")
    with pytest.raises(ServerFailed, match=r"the slow server was not ready within 0\.5 s"):
        server.wait_until(lambda: False, timeout=0.5)
    assert server.process.poll() == -signal.SIGKILL


def test_stop_kills_a_server_that_ignores_the_signal_and_says_so_in_the_code(
    tmp_path: Path,
) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready'); time.sleep(60)"
    )
    server = spawn("the stubborn server", python(code), tmp_path / "log")
    server.wait_until(server.mentions(b"ready"))
    assert server.stop(timeout=0.5) == -signal.SIGKILL


def test_a_server_is_ready_when_it_answers_http_or_accepts_connections(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server = spawn("http.server", [*argv, "--directory", str(tmp_path)], tmp_path / "log")
    try:
        server.wait_until(accepts_connections(port))
        server.wait_until(answers_http(f"http://127.0.0.1:{port}/", lambda r: r.is_success))
        assert not answers_http(f"http://127.0.0.1:{free_port()}/")()
    finally:
        stopped = server.stop()
    assert stopped == -signal.SIGTERM


def test_an_earlier_runs_lines_in_the_same_log_do_not_make_a_restarted_server_ready(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    first = spawn("the first run", python("print('ready')"), log)
    assert first.wait(timeout=30) == 0
    second = spawn("the second run", python("import time; time.sleep(60)"), log)
    try:
        assert not second.mentions(b"ready")()
        assert "ready" in second.log_text()  # the whole file, for failure messages
    finally:
        second.stop()
