"""``headcount-collector demo``: a collector, the instrumented Flask example, and traffic.

Quickstart command one. Everything runs from a temporary folder, which is removed at the
end, and stops on Ctrl-C: the collector and the app run in process groups of their own,
so a terminal's Ctrl-C reaches only the demo, which then stops the app first (its last
send reaches the collector) and the collector after it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from headcount_collector.config import starter_config

__all__ = ["drive_traffic", "run_demo"]

_REFERRERS = (
    None,
    None,
    "https://www.google.com/search?q=headcount+analytics",
    "https://news.ycombinator.com/item?id=4242",
    "https://duckduckgo.com/",
    "https://mastodon.social/@someone/1234567",
    "https://newsletter.example.org/issues/42?subscriber=ann@example.com",
)
_CAMPAIGNS = (
    "",
    "",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=winter-launch",
    "?utm_source=mastodon&utm_medium=social",
    "?utm_campaign=Black%20Friday!&email=bob@example.com",  # not a slug: dropped
)
_BROWSERS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5",
)
_BOTS = ("Googlebot/2.1 (+http://www.google.com/bot.html)", "curl/8.5.0")


def _find_examples() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "examples" / "flask_app" / "app.py").exists():
            return parent
    raise SystemExit(
        "headcount-collector demo needs the repository checkout (examples/flask_app); "
        "run it from a clone installed with pip install -e"
    )


class PortInUse(SystemExit):
    """A port the demo needs is taken: say which, and how to choose another."""


def _check_port_free(port: int, option: str) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUse(
                f"headcount-collector demo: port {port} is already in use (another collector "
                f"or demo?); stop it or pick a free port with {option} PORT"
            ) from None


def _wait_until_up(
    url: str,
    process: subprocess.Popen[bytes],
    what: str,
    is_ours: Callable[[httpx.Response], bool] = lambda response: True,
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited early with code {process.returncode}")
        try:
            response = httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if is_ours(response):
            return
        # Something answers, but not what the demo started (a port taken meanwhile).
        raise SystemExit(
            f"headcount-collector demo: {url} is answered by something other than "
            f"{what} the demo started; is the port taken? Pick another one."
        )
    raise SystemExit(f"{what} did not start within 30 s")


def _browser_headers(agent: str, address: str) -> dict[str, str]:
    """What a browser sends with a top-level navigation (the app sees these headers)."""
    return {
        "User-Agent": agent,
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "en-GB,en;q=0.7",
        "Sec-Fetch-Dest": "document",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-User": "?1",
        "Upgrade-Insecure-Requests": "1",
        "X-Forwarded-For": address,
    }


def _one_visit(client: httpx.Client, rng: random.Random) -> None:
    agent = rng.choice(_BOTS) if rng.random() < 0.1 else rng.choice(_BROWSERS)
    # Each simulated visitor comes through the (trusted) local proxy from its own address
    # in a documentation range; the app links its pageviews into a visit in memory only.
    address = f"198.51.100.{rng.randint(1, 254)}"
    headers = _browser_headers(agent, address)
    referrer = rng.choice(_REFERRERS)
    if referrer:
        headers["Referer"] = referrer
        headers["Sec-Fetch-Site"] = "cross-site"
    else:
        headers["Sec-Fetch-Site"] = "none"  # typed or bookmarked
    path = rng.choice(("/", "/", "/about", "/users/", f"/users/{rng.randint(1, 3)}"))
    current = str(client.base_url).rstrip("/") + path
    client.get(path + rng.choice(_CAMPAIGNS), headers=headers)
    for _ in range(rng.randint(0, 3)):
        # A click on a link of the page just seen: same origin, that page as referrer
        # (browsers send the path but no query by default: strict-origin-when-cross-origin
        # keeps the full URL for same-origin requests).
        headers["Referer"] = current
        headers["Sec-Fetch-Site"] = "same-origin"
        next_path = rng.choice(
            (
                "/about",
                "/users/",
                f"/users/{rng.randint(1, 3)}",
                "/contact",
                "/nope/x",
                f"/users/{rng.randint(100, 999999)}",
            )
        )
        client.get(next_path, headers=headers)
        current = str(client.base_url).rstrip("/") + next_path
    headers["Referer"] = current
    headers["Sec-Fetch-Site"] = "same-origin"
    roll = rng.random()
    if roll < 0.15:
        client.post("/contact", data={"name": "Ann"}, headers=headers)
    elif roll < 0.2:
        client.get("/boom", headers=headers)


def drive_traffic(app_url: str, stop: threading.Event, rate: float = 20.0, seed: int = 7) -> int:
    """Browse the example like a crowd of visitors until ``stop`` is set; returns visits."""
    rng = random.Random(seed)
    visits = 0
    with httpx.Client(base_url=app_url, timeout=5, follow_redirects=True) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                _one_visit(client, rng)
                visits += 1
            stop.wait(1 / rate)
    return visits


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
    args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        # A session of its own: a terminal's Ctrl-C goes to the demo only, and the demo
        # stops each child exactly once, in order.
        process = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            # One SIGINT lets Python run its exit hooks, so the SDK sends its last counts.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_demo(
    port: int = 8787, app_port: int = 8000, duration: float = 0, keep: bool = False
) -> int:
    root = _find_examples()
    _check_port_free(port, "--port")
    _check_port_free(app_port, "--app-port")
    work = Path(tempfile.mkdtemp(prefix="headcount-demo-"))
    try:
        return _run_in(work, root, port, app_port, duration)
    finally:
        if keep:
            print(f"files kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run_in(work: Path, root: Path, port: int, app_port: int, duration: float) -> int:
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
        "PYTHONPATH": str(root),
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
    run_app = [
        sys.executable,
        "-c",
        "from examples.flask_app.app import create_app; "
        f"create_app().run(host='127.0.0.1', port={app_port}, threaded=True)",
    ]
    stop = threading.Event()
    with (
        _process(serve, env, work, work / "collector.log") as collector_process,
        _process(run_app, app_env, root, work / "app.log") as app_process,
    ):
        # Only the collector the demo started knows this fresh read token.
        _wait_until_up(
            f"{collector}/v1/schema",
            collector_process,
            "the collector",
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
        _wait_until_up(app_url + "/", app_process, "the Flask example")
        traffic = threading.Thread(target=drive_traffic, args=(app_url, stop), daemon=True)
        traffic.start()
        print(
            f"""
Headcount demo is running (files in {work}, removed when it stops).
  Example app (Flask, instrumented):  {app_url}/
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
    for label, metric, by in (
        ("pageviews", "pageviews", "route"),
        ("entries", "entries", "route"),
        ("referrers", "pageviews", "referrer"),
    ):
        print(f"final {label}:", _summary_after_stop(work, read_token, metric, by), flush=True)
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
