"""The demo's run: start a collector and the demo site, browse the site, print counts.

Everything runs from a temporary folder, which is removed at the end, and stops on
Ctrl-C: the collector and the site run in process groups of their own, so a terminal's
Ctrl-C reaches only the demo, which then stops the site first (its last send reaches the
collector) and the collector after it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from headcount_collector._processes import (
    ServerFailed,
    ServerProcess,
    answers_http,
    listen_problem,
    spawn,
)
from headcount_collector.config import starter_config
from headcount_collector.demo._traffic import drive_traffic


def _check_flask_installed() -> None:
    if importlib.util.find_spec("flask") is None:
        raise SystemExit(
            "headcount-collector demo: the demo site is a Flask app, and Flask is not "
            "installed; pip install 'headcount[collector,flask]'"
        )


class PortInUse(SystemExit):
    """A port the demo needs is taken: say which, and how to choose another."""


def _check_port_free(port: int, option: str) -> None:
    problem = listen_problem("127.0.0.1", port)
    if problem is not None:
        raise PortInUse(
            f"headcount-collector demo: {problem} (another collector or demo?); "
            f"stop it or pick a free port with {option} PORT"
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """``kill``, ``timeout``, systemd and Docker stop a program with SIGTERM, which by
    default ends the demo at once and leaves its collector and site running (they are in
    sessions of their own): stop as Ctrl-C does instead, children first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_until_up(
    server: ServerProcess, url: str, is_ours: Callable[[httpx.Response], bool]
) -> None:
    def ours_or_exit(response: httpx.Response) -> bool:
        if is_ours(response):
            return True
        # Something answers, but not what the demo started (a port taken meanwhile).
        raise SystemExit(
            f"headcount-collector demo: {url} is answered by something other than "
            f"{server.name} the demo started; is the port taken? Pick another one."
        )

    try:
        server.wait_until(answers_http(url, ours_or_exit), interval=0.2)
    except ServerFailed as failed:
        raise SystemExit(f"headcount-collector demo: {failed}") from None


def _summary(collector: str, read_token: str, metric: str = "pageviews", by: str = "route") -> str:
    try:
        response = httpx.get(
            f"{collector}/v1/stats",
            params={"metric": metric, "interval": "total", "by": by},
            headers={"Authorization": f"Bearer {read_token}"},
            timeout=5,
        )
        rows = response.json()["rows"]
    except (httpx.HTTPError, ValueError, KeyError):
        return "(collector not answering yet)"
    if not rows:
        return "no counts yet (the app sends every few seconds; counts below k are withheld)"
    return ", ".join(f"{row[by]} {row['count']}" for row in rows)


@contextlib.contextmanager
def _process(
    name: str, args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[ServerProcess]:
    # A session of its own: a terminal's Ctrl-C goes to the demo only, and the demo
    # stops each child exactly once, in order.
    server = spawn(name, args, log, cwd=cwd, env=env, new_session=True)
    try:
        yield server
    finally:
        # One SIGINT lets Python run its exit hooks, so the SDK sends its last counts.
        server.stop(signal.SIGINT, timeout=15)


def run_demo(
    port: int = 8787, app_port: int = 8000, duration: float = 0, keep: bool = False
) -> int:
    _check_flask_installed()
    _check_port_free(port, "--port")
    _check_port_free(app_port, "--app-port")
    work = Path(tempfile.mkdtemp(prefix="headcount-demo-"))
    try:
        with _terminate_like_ctrl_c():
            return _run_in(work, port, app_port, duration)
    except KeyboardInterrupt:
        # Before the traffic started (during start-up): everything is stopped by now.
        print("\nstopped", flush=True)
        return 130
    finally:
        if keep:
            print(f"files kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run_in(work: Path, port: int, app_port: int, duration: float) -> int:
    config_text, write_token, read_token = starter_config("demo", "UTC")
    # Sealed noise releases an hour only hours after it ends; the demo shows counts as
    # they arrive, so its site opts out, and says so (production sites keep the default).
    config_text = config_text.replace("[[sites]]\n", "[[sites]]\nexact_counts = true\n", 1)
    config = work / "sites.toml"
    config.write_text(config_text, encoding="utf-8")
    collector = f"http://127.0.0.1:{port}"
    app_url = f"http://127.0.0.1:{app_port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    app_env = {
        **env,
        "HEADCOUNT_ENDPOINT": collector,
        "HEADCOUNT_WRITE_TOKEN": write_token,
        "HEADCOUNT_FLUSH_INTERVAL": "5",
        # Counts as they happen, for the demo; apps default to sending each hour's counts
        # in the next hour, so arrival times say nothing finer than the hour.
        "HEADCOUNT_SEND_SCHEDULE": "immediate",
        # Short visits so finished visits show up within the demo, not after 30 minutes.
        "HEADCOUNT_VISIT_GAP": "8",
        "HEADCOUNT_TRUSTED_PROXIES": "127.0.0.1",
    }
    serve = [
        sys.executable,
        "-m",
        "headcount_collector",
        "serve",
        "--config",
        str(config),
        "--db",
        f"sqlite:///{work / 'demo.sqlite3'}",
        "--port",
        str(port),
    ]
    run_site = [sys.executable, "-m", "headcount_collector.demo._site", str(app_port)]
    stop = threading.Event()
    with (
        _process("the collector", serve, env, work, work / "collector.log") as collector_process,
        _process("the demo site", run_site, app_env, work, work / "app.log") as site_process,
    ):
        # Only the collector the demo started knows this fresh read token.
        _wait_until_up(
            collector_process,
            f"{collector}/v1/schema",
            lambda response: response.status_code == 200 and '"wire"' in response.text,
        )
        own = httpx.get(
            f"{collector}/v1/stats",
            headers={"Authorization": f"Bearer {read_token}"},
            timeout=5,
        )
        if own.status_code != 200 or own.json().get("site") != "demo":
            raise SystemExit(
                f"headcount-collector demo: port {port} is answered by another collector; "
                "pick a free port with --port PORT"
            )
        # The port was free a moment ago and the app holds it now, or it would have
        # exited (and _wait_until_up said so).
        _wait_until_up(
            site_process, app_url + "/", lambda response: "Headcount demo" in response.text
        )
        traffic = threading.Thread(target=drive_traffic, args=(app_url, stop), daemon=True)
        traffic.start()
        print(
            f"""
Headcount demo is running (files in {work}, removed when it stops).
  Demo site (Flask, instrumented):    {app_url}/
  Collector:                          {collector}/healthz
  Dashboard (sign in with the read token): {collector}/
  Privacy page:                       {collector}/privacy/demo
  Read token:                         {read_token}
  Query it:
    curl -H 'Authorization: Bearer {read_token}' '{collector}/v1/stats?by=route&interval=total'
    curl -H 'Authorization: Bearer {read_token}' '{collector}/v1/stats?by=referrer&interval=hour'
Simulated visitors are browsing the app; counts appear every few seconds. Ctrl-C stops.
This demo site opts out of noise (exact_counts = true) so counts show at once; a real
site releases each hour only once it is sealed, with noise (README, "Privacy").
""",
            flush=True,
        )
        started = time.monotonic()
        try:
            while duration <= 0 or time.monotonic() - started < duration:
                time.sleep(min(10.0, duration) if duration > 0 else 10.0)
                print("pageviews so far:", _summary(collector, read_token), flush=True)
                print(
                    "visits by pages:",
                    _summary(collector, read_token, "visits", "pages"),
                    flush=True,
                )
        except KeyboardInterrupt:
            print("\nstopping…", flush=True)
        finally:
            stop.set()
            traffic.join(timeout=10)
    # The collector and the app have stopped: the app's last send is in the file.
    finals = [
        (label, _summary_after_stop(work, read_token, metric, by))
        for label, metric, by in (
            ("pageviews", "pageviews", "route"),
            ("entries", "entries", "route"),
            ("referrers", "pageviews", "referrer"),
        )
    ]
    for label, summary in finals:
        print(f"final {label}:", summary, flush=True)
    if any("(other)" in summary for _, summary in finals):
        print(
            "(other): groups below k, and beside them the smallest group shown, so that no "
            "withheld count can be worked out from the total (exact_counts sites; a noised "
            "site hides small groups by its noisy threshold instead; README, Privacy)",
            flush=True,
        )
    return 0


def _summary_after_stop(work: Path, read_token: str, metric: str, by: str) -> str:
    # The collector is stopped by now; read the file it left, through the same query code.
    from headcount_collector.config import load_sites
    from headcount_collector.query import parse_stats_query, run_stats_query
    from headcount_collector.stores.sqlite import SQLiteStore

    sites = load_sites(work / "sites.toml")
    site = sites.by_read_token(read_token)
    if site is None:
        return "(no site)"
    store = SQLiteStore(work / "demo.sqlite3")
    try:
        now = time.time()
        params = [("metric", metric), ("interval", "total"), ("by", by)]
        query = parse_stats_query(params, site, now)
        rows = run_stats_query(store, site, query, now)["rows"]
    finally:
        store.close()
    return ", ".join(f"{r[by]} {r['count']}" for r in rows) or "none"  # type: ignore[attr-defined]
