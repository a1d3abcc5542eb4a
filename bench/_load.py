"""Shared pieces of the collector benchmarks: servers in subprocesses, wrk, RSS sampling.

Not a benchmark itself. Servers always run in their own processes (started, awaited and
stopped by ``headcount_collector._processes``, as the tests and the demo start theirs)
and the load comes from ``wrk`` (a separate C process), so what is measured is the
server, not the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headcount_collector._processes import ServerProcess, answers_http, free_port
from headcount_collector._processes import spawn as spawn_process
from headcount_collector.config import token_digest

WRITE_TOKEN = "hcw_bench-write-token-0001"
READ_TOKEN = "hcr_bench-read-token-0001"
SITE = "bench"


def site_file(directory: Path, hourly_days: int = 30) -> Path:
    """A one-site file with known tokens and k=1 (so every count is visible)."""
    path = directory / "sites.toml"
    path.write_text(
        f"""
[[sites]]
id = "{SITE}"
timezone = "UTC"
write_token_sha256 = "{token_digest(WRITE_TOKEN).hex()}"
read_token_sha256 = "{token_digest(READ_TOKEN).hex()}"
k = 1
hourly_days = {hourly_days}
keep_days = {max(760, hourly_days)}
""",
        encoding="utf-8",
    )
    return path


def current_hour() -> int:
    return int(time.time()) // 3600 * 3600


@dataclass
class Server(ServerProcess):
    """A server process tree (uvicorn master and workers) answering on ``port``."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The process and all its descendants (uvicorn workers are children)."""
        found = [self.process.pid]
        index = 0
        while index < len(found):
            children = Path(f"/proc/{found[index]}/task/{found[index]}/children")
            with contextlib.suppress(OSError):
                found += [int(p) for p in children.read_text().split()]
            index += 1
        return found

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process tree has used so far, from /proc."""
        ticks = 0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the name, which may hold spaces
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        """Summed VmRSS of the process tree."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total


def spawn(name: str, argv: Sequence[str], directory: Path, health_path: str) -> Server:
    port = int(argv[argv.index("--port") + 1])
    started = spawn_process(name, argv, directory / f"{name}.log")
    server = Server(
        started.name, started.process, started.log_path, port, log_offset=started.log_offset
    )
    server.wait_until(answers_http(server.url + health_path))
    return server


def start_collector(
    name: str,
    directory: Path,
    config: Path,
    db_url: str,
    workers: int = 1,
    extra: Sequence[str] = (),
    launcher: Sequence[str] = (),
) -> Server:
    """``headcount-collector serve`` exactly as an operator runs it (``extra``: more options;
    ``launcher``: a command that execs it, such as ``env`` or ``taskset``)."""
    argv = [
        *launcher, sys.executable, "-m", "headcount_collector", "serve", "--config", str(config),
        "--db", db_url, "--port", str(free_port()), "--workers", str(workers),
        "--log-level", "warning", *extra,
    ]  # fmt: skip
    return spawn(name, argv, directory, "/healthz")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int  # socket errors and timeouts
    non_2xx: int
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# Appended to every wrk script: one machine-readable summary line.
_DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"us":%d,"errors":%d,"status":%d,"p50":%d,"p99":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
"""

# Per-thread unique batch ids: a run nonce from Python, the thread number, a counter,
# and random hex, so no two requests of any round can ever be duplicates.
ID_LUA = r"""
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end
local counter = 0
function init(args)
  math.randomseed(os.time() + tid * 7919 + math.floor(os.clock() * 1e6))
end
local function next_id()
  counter = counter + 1
  -- Laid out as the SDK's (wire.Batch): 6 digits naming the sender, 8 of its count,
  -- 18 random.
  return string.format("%s%02x%08x%04x%04x%04x%04x%02x", NONCE:sub(1, 4), tid, counter,
    math.random(0, 65535), math.random(0, 65535), math.random(0, 65535),
    math.random(0, 65535), math.random(0, 255))
end
"""


def lua_string(text: str) -> str:
    """A Lua long-bracket literal holding ``text`` verbatim."""
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def run_wrk(
    url: str, script: str, *, seconds: float, threads: int = 2, connections: int = 64
) -> WrkResult:
    """Run wrk against ``url`` with the Lua ``script`` (it must define ``request``)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    # 12 hex, fresh per run: with the counter it makes every batch id unique.
    nonce = secrets.token_hex(6)
    text = f'NONCE = "{nonce}"\n' + script + _DONE_LUA
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(text)
        path = handle.name
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
             "-s", path, url],
            capture_output=True, text=True, check=False, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["us"] / 1e6,
        errors=data["errors"],
        non_2xx=data["status"],
        latency_p50_ms=data["p50"] / 1000,
        latency_p99_ms=data["p99"] / 1000,
    )


@dataclass
class Samples:
    """Figures of one scenario across rounds; reported as medians."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


def ratio_text(value: float, baseline: float) -> str:
    return f"{value / baseline:.0%}" if baseline else "n/a"


def verdict(ratio: float, goal: float) -> str:
    return "MET" if ratio >= goal else "MISSED"
