"""``headcount-collector demo`` under what goes wrong on a newcomer's machine."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests._servers import free_port

pytestmark = pytest.mark.slow


def demo(*args: str, temp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "headcount_collector", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
        # Like a terminal: the demo leads a process group that Ctrl-C is sent to.
        start_new_session=True,
    )


class AnswersEverything(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        return None


def test_a_port_answered_by_something_else_is_refused_clearly(tmp_path: Path) -> None:
    squatter = HTTPServer(("127.0.0.1", 0), AnswersEverything)
    thread = threading.Thread(target=squatter.serve_forever, daemon=True)
    thread.start()
    try:
        port = squatter.server_address[1]
        process = demo("--port", str(port), "--app-port", str(free_port()), temp=tmp_path)
        out, err = process.communicate(timeout=60)
    finally:
        squatter.shutdown()
        squatter.server_close()
    assert process.returncode != 0
    assert f"port {port} is already in use" in err
    assert "running" not in out
    assert not list(tmp_path.iterdir())


def test_a_taken_app_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app_port = taken.getsockname()[1]
        process = demo("--port", str(free_port()), "--app-port", str(app_port), temp=tmp_path)
        _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"port {app_port} is already in use" in err
    assert "--app-port" in err


def test_ctrl_c_stops_children_cleanly_and_the_final_figures_arrive(tmp_path: Path) -> None:
    process = demo(
        "--port", str(free_port()), "--app-port", str(free_port()), "--keep", temp=tmp_path
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:
        if "pageviews so far:" in line and re.search(r"\d", line.split(":", 1)[1]):
            break
        assert time.monotonic() < deadline, "no counts within a minute"
    # A terminal's Ctrl-C: SIGINT to the whole foreground process group.
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopping" in out
    final = {
        label: text
        for label, text in (
            line.split(": ", 1) for line in out.splitlines() if line.startswith("final ")
        )
    }
    assert re.search(r"\d", final["final pageviews"])
    (work,) = tmp_path.glob("headcount-demo-*")  # kept on request
    app_log = (work / "app.log").read_text()
    # The app was stopped once, by the demo: its exit flush ran to the end.
    # (The example's /boom route raises on purpose; no other traceback is expected.)
    assert "KeyboardInterrupt" not in app_log
    assert "lost at shutdown" not in app_log


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_stops_the_collector_and_site_too_and_a_rerun_finds_the_ports_free(
    tmp_path: Path,
) -> None:
    """``kill``, ``timeout``, systemd and Docker send SIGTERM to the demo alone: its
    collector and site (in sessions of their own) must stop with it, and the ports they
    leave in TIME_WAIT must not read as taken by the next run."""
    port, app_port = free_port(), free_port()
    for run in range(2):
        process = demo("--port", str(port), "--app-port", str(app_port), temp=tmp_path)
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        for line in process.stdout:
            if "pageviews so far:" in line:
                break
            assert time.monotonic() < deadline, f"run {run}: no progress within a minute"
        os.kill(process.pid, signal.SIGTERM)  # the demo's own process only
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (run, err)
        assert "final pageviews" in out
        assert not _listening(port), f"run {run}: the collector outlived the demo"
        assert not _listening(app_port), f"run {run}: the demo site outlived the demo"
        assert not list(tmp_path.glob("headcount-demo-*")), "the temporary folder was left"
