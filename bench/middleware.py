"""Middleware overhead: requests per second and server CPU per request of the example
apps under their real servers, with Headcount, with its peers, and without either,
measured in the same run.

Run from the repository root (needs ``wrk``: ``apt-get install wrk``):

    .venv/bin/python bench/middleware.py [--duration 4] [--rounds 5] [--quick] [--apps flask]

About 5 minutes with the defaults on an idle machine (9 on a busy one), 2 with ``--quick``
(3 rounds of 2 s).

Apps and servers (same settings in every variant):
- Flask example under ``gunicorn --workers=2`` (sync workers, the example's config);
- FastAPI example under ``uvicorn`` (one process, access log off).

Variants (the peers' apps are in ``bench/_peer_apps.py``):
- ``without``: the example app with the Headcount middleware (and Flask's teardown hook)
  taken out again, so no Headcount code runs per request: the baseline;
- ``disabled``: the example app as shipped with ``HEADCOUNT_ENABLED=false``;
- ``with``: the example app as shipped, counting and sending every second
  (``HEADCOUNT_FLUSH_INTERVAL=1``, far more often than the default 60 s) to a real
  collector on a local SQLite database;
- ``prometheus``: ``without`` plus a prometheus_client Counter and Histogram labelled
  route/method/status, as prometheus-flask-exporter and starlette-exporter do;
- ``posthog``: ``without`` plus posthog's server-side ``capture()`` of one event per
  request, with sending disabled.

Load comes from ``wrk`` in a separate process (one thread, 16 connections) cycling over
four HTML pages with a browser user agent and an external referrer, i.e. every request
takes the most expensive path: a pageview. With two or more CPUs the app server is
pinned to CPU 0 and wrk to CPU 1. Variants are interleaved round by round, in a
rotating order, so machine noise hits them alike; the figures are medians over rounds,
and the ratios are against ``without`` from the same run, both as a ratio of medians
and as the median of each round's ratio. After the runs the servers are stopped with
SIGTERM, and the collector's count of the ``with`` requests is printed next to what wrk
completed, to show that the sending really happened.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from _provenance import print_provenance
from headcount_collector._processes import answers_http, free_port, spawn

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VARIANTS = ("without", "disabled", "with", "prometheus", "posthog")
FLASK_FACTORIES = {
    "without": "flask_without_headcount",
    "prometheus": "flask_with_prometheus",
    "posthog": "flask_with_posthog",
}
FASTAPI_FACTORIES = {
    "without": "fastapi_without_headcount",
    "prometheus": "fastapi_with_prometheus",
    "posthog": "fastapi_with_posthog",
}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PAGES = ("/", "/about", "/users/1", "/users/")
WRK_THREADS = 1
WRK_CONNECTIONS = 16
WARMUP_SECONDS = 2
# On a small machine the load generator and the app would fight over cores and turn
# scheduler noise into "overhead": each gets its own CPU when there are at least two.
PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
SERVER_CPU, WRK_CPU = "0", "1"


def pinned(cpu: str, command: list[str]) -> list[str]:
    # taskset execs the command, so the process id (and SIGTERM) stay the server's.
    return ["taskset", "-c", cpu, *command] if PIN else command


# --- processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Collector:
    url: str
    write_token: str
    read_token: str

    def requests_counted(self) -> int:
        response = httpx.get(
            f"{self.url}/v1/stats",
            params={"metric": "requests", "interval": "total"},
            headers={"Authorization": f"Bearer {self.read_token}"},
            timeout=10,
        )
        response.raise_for_status()
        return sum(row["count"] or 0 for row in response.json()["totals"])


@contextlib.contextmanager
def collector(workdir: Path) -> Iterator[Collector]:
    from headcount_collector.config import starter_config

    text, write_token, read_token = starter_config("bench", "UTC")
    sites = workdir / "sites.toml"
    # The bench checks that every request was counted, which needs the exact opt-out:
    # sealed noise releases nothing until hours later.
    exact = text.replace("[[sites]]\n", "[[sites]]\nexact_counts = true\n", 1)
    sites.write_text(exact, encoding="utf-8")
    port = free_port()
    command = [
        sys.executable, "-m", "headcount_collector", "serve", "--config", str(sites),
        "--db", f"sqlite:///{workdir / 'bench.sqlite3'}", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    server = spawn("the collector", command, workdir / "collector.log")
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_until(answers_http(f"{url}/healthz"))
        yield Collector(url, write_token, read_token)
    finally:
        server.stop(timeout=30)


@dataclass(frozen=True)
class AppSpec:
    name: str
    command: Callable[[int, str], list[str]]  # (port, variant) -> argv


def _gunicorn_flask(port: int, variant: str) -> list[str]:
    target = (
        "examples.flask_app.app:app"
        if variant in ("with", "disabled")
        else f"bench._peer_apps:{FLASK_FACTORIES[variant]}()"
    )
    return [
        str(BIN / "gunicorn"), "--workers=2", f"--bind=127.0.0.1:{port}",
        "--config=examples/flask_app/gunicorn.conf.py", target,
    ]  # fmt: skip


def _uvicorn_fastapi(port: int, variant: str) -> list[str]:
    target = (
        ["examples.fastapi_app.app:app"]
        if variant in ("with", "disabled")
        else ["--factory", f"bench._peer_apps:{FASTAPI_FACTORIES[variant]}"]
    )
    return [
        sys.executable, "-m", "uvicorn", "--host=127.0.0.1", f"--port={port}",
        "--no-access-log", "--log-level=warning", *target,
    ]  # fmt: skip


APPS = (
    AppSpec("flask (gunicorn -w 2)", _gunicorn_flask),
    AppSpec("fastapi (uvicorn)", _uvicorn_fastapi),
)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int  # the gunicorn master or the uvicorn process


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) of ``root`` and all its descendants, from /proc.

    Throughput on a shared machine moves with everyone else's load; the CPU time the
    server itself spends per request barely does, so it is reported next to req/s.
    """
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The fields after the command name (which may hold spaces): state, ppid, ...
        fields = stat.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    tree = {root}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def app_server(spec: AppSpec, variant: str, sink: Collector, workdir: Path) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADCOUNT_")}
    if variant == "with":
        env |= {
            "HEADCOUNT_ENDPOINT": sink.url,
            "HEADCOUNT_WRITE_TOKEN": sink.write_token,
            "HEADCOUNT_FLUSH_INTERVAL": "1",
        }
    else:
        env["HEADCOUNT_ENABLED"] = "false"
    log_path = workdir / f"{spec.name.split()[0]}-{variant}.log"
    argv = pinned(SERVER_CPU, spec.command(port, variant))
    server = spawn(f"{spec.name} ({variant})", argv, log_path, cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_until(answers_http(url + "/about"))
        yield Server(url, server.pid)
    finally:
        server.stop(timeout=30)


# --- load -------------------------------------------------------------------------------

_WRK_SCRIPT = """
local pages = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", pages[(i %% #pages) + 1])
end
"""


@dataclass(frozen=True)
class Run:
    requests_per_second: float
    completed: int
    errors: int
    cpu_us_per_request: float  # the server's CPU time over the run / requests completed


def run_wrk(server: Server, seconds: float, script: Path) -> Run:
    command = pinned(WRK_CPU, [
        "wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s",
        "-s", str(script),
        "-H", f"User-Agent: {BROWSER}",
        "-H", "Accept: text/html",
        "-H", "Referer: https://news.example.org/item",
        server.url,
    ])  # fmt: skip
    cpu_before = tree_cpu_seconds(server.pid)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    completed = re.search(r"(\d+) requests in", output)
    if rate is None or completed is None:
        raise SystemExit(f"could not read wrk's output:\n{output}")
    # Non-2xx answers or socket errors would mean the run measured something else.
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(map(int, sockets.groups())) if sockets else 0
    done = int(completed.group(1))
    return Run(float(rate.group(1)), done, errors, cpu / max(done, 1) * 1e6)


def bench_app(
    spec: AppSpec, sink: Collector, workdir: Path, rounds: int, seconds: float, script: Path
) -> tuple[dict[str, list[Run]], int]:
    results: dict[str, list[Run]] = {v: [] for v in VARIANTS}
    with contextlib.ExitStack() as servers:
        servers_by_variant = {
            v: servers.enter_context(app_server(spec, v, sink, workdir)) for v in VARIANTS
        }
        warmup_completed = 0
        for variant in VARIANTS:
            warmup = run_wrk(servers_by_variant[variant], WARMUP_SECONDS, script)
            if variant == "with":
                warmup_completed = warmup.completed
        for round_index in range(rounds):
            shift = round_index % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            for variant in order:
                run = run_wrk(servers_by_variant[variant], seconds, script)
                results[variant].append(run)
                print(
                    f"  {spec.name:<22} round {round_index + 1}  {variant:<10} "
                    f"{run.requests_per_second:9.1f} req/s {run.cpu_us_per_request:7.1f} µs CPU/req"
                    + (f"  ({run.errors} errors)" if run.errors else ""),
                    flush=True,
                )
    return results, warmup_completed


def summarize(name: str, results: dict[str, list[Run]], counted: int, sent: int) -> list[str]:
    def median(variant: str, value: Callable[[Run], float]) -> float:
        return statistics.median(value(run) for run in results[variant])

    def paired(variant: str, value: Callable[[Run], float]) -> float:
        pairs = zip(results[variant], results["without"], strict=True)
        return statistics.median(value(run) / value(base) for run, base in pairs)

    def rate(run: Run) -> float:
        return run.requests_per_second

    def cpu(run: Run) -> float:
        return run.cpu_us_per_request

    lines = [
        name,
        f"  {'variant':<11}{'req/s':>9}{'ratio':>8}{'per round':>10}"
        f"{'CPU µs/req':>12}{'added':>9}{'ratio':>8}{'per round':>10}",
    ]
    base_rate, base_cpu = median("without", rate), median("without", cpu)
    for variant in VARIANTS:
        v_rate, v_cpu = median(variant, rate), median(variant, cpu)
        lines.append(
            f"  {variant:<11}{v_rate:9.1f}{v_rate / base_rate:8.1%}{paired(variant, rate):10.1%}"
            f"{v_cpu:12.1f}{v_cpu - base_cpu:+9.1f}{v_cpu / base_cpu:8.1%}"
            f"{paired(variant, cpu):10.1%}"
        )
    # The goal compares Headcount's added server CPU with prometheus' in the same run.
    added = {v: median(v, cpu) - base_cpu for v in ("with", "prometheus", "posthog")}
    lines.append(
        "  added CPU per request, Headcount against the peers: "
        f"{added['with']:+.1f} µs vs prometheus {added['prometheus']:+.1f} µs "
        f"(with/prometheus in CPU per request, median of rounds: "
        f"{statistics.median(a.cpu_us_per_request / b.cpu_us_per_request for a, b in zip(results['with'], results['prometheus'], strict=True)):.1%}), "
        f"posthog {added['posthog']:+.1f} µs"
    )
    lines.append(
        f"  collector counted {counted} requests from the 'with' server; wrk completed "
        f"{sent} (wrk does not count requests cut off at the end of a run)"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Many short interleaved runs rather than a few long ones: on a shared machine the
    # noise comes in bursts, and medians over more pairs shrug it off.
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    # Five rounds of five variants in rotation: each variant runs once in each position.
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds of 2 s: a check in about 1.5 min"
    )
    parser.add_argument(
        "--apps", choices=("both", "flask", "fastapi"), default="both", help="which app server"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 3, 2.0
    print_provenance()
    if args.rounds < 1 or args.duration <= 0:
        raise SystemExit("--rounds must be >= 1 and --duration > 0")

    import gunicorn
    import uvicorn

    print(
        f"gunicorn {gunicorn.__version__}, "
        f"uvicorn {uvicorn.__version__}, {os.cpu_count()} CPUs "
        f"(load average {os.getloadavg()[0]:.2f} at start); wrk -t{WRK_THREADS} "
        f"-c{WRK_CONNECTIONS}, {args.duration:g} s per run, {args.rounds} rounds, "
        f"pages {', '.join(PAGES)}"
        + (f"; app server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU}" if PIN else "")
    )
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="headcount-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "pages.lua"
        script.write_text(_WRK_SCRIPT % ", ".join(f'"{p}"' for p in PAGES), encoding="utf-8")
        with collector(workdir) as sink:
            for spec in APPS:
                if args.apps != "both" and not spec.name.startswith(args.apps):
                    continue
                before = sink.requests_counted()
                results, warmup = bench_app(spec, sink, workdir, args.rounds, args.duration, script)
                # The servers are stopped now, so the 'with' server has flushed at exit.
                time.sleep(1)
                counted = sink.requests_counted() - before
                sent = warmup + sum(r.completed for r in results["with"])
                summary += summarize(spec.name, results, counted, sent)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    print(
        "Summary (ratios against 'without' from the same run, of medians and per round; "
        "goal: 'with' adds no more server CPU per request than 'prometheus')"
    )
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
