"""Server processes: spawn one with its output in a log file, wait until it is ready, stop it.

The one implementation of "start a server and wait". ``headcount-collector demo`` starts
its collector and demo site with it, ``tests/_servers.py`` builds the test suite's
servers on it, and ``bench/_load.py`` the benchmarks'. It lives in the package because
the demo ships in the wheel; the tests and benchmarks import it from here.
"""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "ServerFailed",
    "ServerProcess",
    "accepts_connections",
    "answers_http",
    "free_port",
    "listen_problem",
    "spawn",
]

Probe = Callable[[], bool]


class ServerFailed(RuntimeError):
    """A server exited before it was ready, or did not become ready in time.

    The message ends with the server's log, which is usually what explains it.
    """


def free_port() -> int:
    """A local TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listen_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host``:``port`` right now (None: it can).

    Probed as uvicorn binds, with SO_REUSEADDR: a port whose last connections are only
    in TIME_WAIT (a server stopped a moment ago) is free, a listening one is not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {host}:{port}: {exc}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is already in use on {host}"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


@dataclass
class ServerProcess:
    """A started server: its process and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    # Where this server's output starts: a log may be appended to by an earlier run.
    log_offset: int = field(default=0, kw_only=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def mentions(self, text: bytes, times: int = 1) -> Probe:
        """Ready once this server has logged ``text`` ``times`` times (one "Booting
        worker" per gunicorn worker, say); an earlier run's lines in the file do not count."""

        def probe() -> bool:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return log.read().count(text) >= times

        return probe

    def failure(self, what: str) -> ServerFailed:
        return ServerFailed(f"{self.name} {what}; its log:\n{self.log_text()}")

    def wait_until(self, ready: Probe, timeout: float = 30.0, interval: float = 0.1) -> None:
        """Poll ``ready`` until it holds; fail (stopping the server) if the process exits
        first or the timeout passes. ``ready`` may raise to fail at once."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise self.failure(f"exited early with code {self.process.returncode}")
            if ready():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise self.failure(f"was not ready within {timeout:g} s")
            time.sleep(interval)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` (unless it has exited already) and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        """The exit code once it exits. A server still running after ``timeout`` is
        killed: its code is then ``-SIGKILL``, which a caller expecting a clean stop
        reports as the failure."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> ServerProcess:
    """Start ``argv`` with stdout and stderr appended to ``log_path``.

    ``new_session`` puts it in a process group of its own, so a terminal's Ctrl-C
    reaches only its parent, which then stops it once, in its own order.
    """
    with log_path.open("ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    return ServerProcess(name, process, log_path, log_offset=offset)


def answers_http(
    url: str, accept: Callable[[httpx.Response], bool] = lambda response: True
) -> Probe:
    """Ready once ``url`` answers at all and ``accept`` holds for the answer."""

    def probe() -> bool:
        try:
            response = httpx.get(url, timeout=1)
        except httpx.HTTPError:
            return False
        return accept(response)

    return probe


def accepts_connections(port: int) -> Probe:
    """Ready once a TCP connect succeeds: a probe that sends no request, so an
    instrumented app under test never counts it."""

    def probe() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    return probe
