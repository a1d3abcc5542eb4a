"""Access-log import speed and memory: a realistic combined log with known truth.

    .venv/bin/python bench/import.py [--lines 1000000] [--against OLD/sdk]

Writes a combined log (browsers, crawlers, assets, 404s, form posts, referrers, utm
links, ids in paths) spread over a day, then in separate processes:

- baseline: a plain loop that reads the file and splits every line;
- import: ``Importer`` with a Flask app's ``url_map`` as the router, visits on, nothing
  sent (dry run): parse, route, coarsen and count every line;
- the same import on a fifth of the log, to show that peak memory does not grow with it;
- with ``--against DIR``, the import again in each round with the ``headcount`` package
  from DIR (another checkout's ``sdk/``, e.g. a ``git worktree`` of main): old against
  new in one run.

Times are each process's CPU seconds (one core's work), medians of interleaved rounds.
Prints lines per second, the ratio to the baseline and peak RSS, and checks the
importer's pageview, request and bot totals against the generator's truth.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _provenance import print_provenance

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
]
CRAWLERS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
]
REFERRERS = [
    "-",
    "-",
    "https://www.google.com/",
    "https://news.ycombinator.com/item?id=1",
    "https://www.example.org/",
    "https://t.co/abc",
]
FLASK_APP = """
from flask import Flask
app = Flask(__name__)
for rule in ["/", "/about", "/pricing", "/blog/", "/blog/<slug>", "/users/<int:user_id>",
             "/docs/<path:page>", "/api/items/<int:item_id>"]:
    app.add_url_rule(rule, rule, lambda **kw: "")
app.add_url_rule("/contact", "contact", lambda: "", methods=["POST"])
"""


def _page(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.25:
        return "/"
    if roll < 0.35:
        return rng.choice(["/about", "/pricing", "/blog/"])
    if roll < 0.6:
        return f"/blog/post-{rng.randrange(400)}"
    if roll < 0.8:
        return f"/users/{rng.randrange(10**6)}"
    return f"/docs/guide/section-{rng.randrange(60)}"


def generate(path: Path, lines: int, seed: int = 7) -> dict[str, int]:
    """Write the log; return the truth by the SDK's rules as the generator applied them."""
    rng = random.Random(seed)
    start = (int(time.time()) // 3600 - 60) * 3600
    truth = {"pageviews": 0, "requests": lines, "bots": 0}
    visitors = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(20000)]
    with path.open("w", encoding="utf-8") as out:
        for n in range(lines):
            moment = time.gmtime(start + n * 86400 // lines)
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", moment)
            addr = rng.choice(visitors)
            bot = rng.random() < 0.15
            agent = rng.choice(CRAWLERS if bot else BROWSERS)
            roll = rng.random()
            method, status = "GET", 200
            if roll < 0.3:
                target = rng.choice(["/static/app.css", "/static/app.js", "/favicon.ico"])
                page = False
            elif roll < 0.33:
                target, status, page = f"/wp-login.php?x={n}", 404, False
            elif roll < 0.35:
                target, method, status, page = "/contact", "POST", 303, False
            elif roll < 0.37:
                target, page = f"/api/items/{rng.randrange(5000)}.json", False
            else:
                target, page = _page(rng), True
                if rng.random() < 0.05:
                    target += "?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
            referer = rng.choice(REFERRERS)
            elapsed = rng.random() * 0.4
            if bot:
                truth["bots"] += 1
            elif page:
                truth["pageviews"] += 1
            out.write(
                f'{addr} - - [{stamp}] "{method} {target} HTTP/1.1" {status} 1234 '
                f'"{referer}" "{agent}" {elapsed:.3f}\n'
            )
    return truth


def baseline(path: str) -> None:
    fields = 0
    with open(path, "rb") as stream:
        for line in stream:
            fields += len(line.decode("utf-8", "replace").split(" "))
    print(json.dumps({"fields": fields}))


def run_import(path: str, app_dir: str) -> None:
    sys.path.insert(0, app_dir)
    from headcount.logimport import Importer, LineSource, load_resolver, parser_for

    fmt = (
        'log:$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" $request_time'
    )
    # The router's rules are the app's own text, as the CLI says for --app; a checkout
    # before 2026-12-05 (--against) has no such option.
    newer_options: dict[str, Any] = (
        {"routes_from_app": True}
        if "routes_from_app" in inspect.signature(Importer).parameters
        else {}
    )
    importer = Importer(
        parser_for(fmt),
        load_resolver("benchflask:app", None, None),
        client=None,
        tracker_options={"visits_store": "memory", "max_keys": 100_000},
        dry_run=True,
        host="www.example.org",
        output=lambda body: None,
        **newer_options,
    )
    summary = importer.run(LineSource([path]))
    print(
        json.dumps(
            {
                "lines": summary.lines,
                "pageviews": summary.pageviews,
                "requests": summary.requests,
                "bots": summary.bots,
                "hours": len(summary.hours),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _timed(*args: str, sdk: str | None = None) -> tuple[float, dict[str, float]]:
    """The child's CPU seconds (user + system: one core's work, whatever else the machine
    is doing) and its last line of output. ``sdk``: import headcount from there."""
    env = None if sdk is None else {**os.environ, "PYTHONPATH": sdk}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", metavar="SDK_DIR", help="also time this headcount")
    parser.add_argument("--_baseline")
    parser.add_argument("--_import", nargs=2)
    args = parser.parse_args()
    if args._baseline:
        baseline(args._baseline)
        return
    if args._import:
        run_import(*args._import)
        return
    print_provenance()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "benchflask.py").write_text(FLASK_APP, encoding="utf-8")
        log = directory / "access.log"
        small = directory / "small.log"
        truth = generate(log, args.lines)
        generate(small, args.lines // 5)
        # Interleaved rounds, medians: a busy machine slows both alike.
        base_runs: list[float] = []
        import_runs: list[float] = []
        against_runs: list[float] = []
        results = []
        for _ in range(args.rounds):
            base_runs.append(_timed("--_baseline", str(log))[0])
            if args.against:
                against_cpu, against_result = _timed("--_import", str(log), tmp, sdk=args.against)
                against_runs.append(against_cpu)
                results.append(against_result)
            import_cpu, result = _timed("--_import", str(log), tmp)
            import_runs.append(import_cpu)
            results.append(result)
        base_s, import_s = statistics.median(base_runs), statistics.median(import_runs)
        _, small_result = _timed("--_import", str(small), tmp)
    for imported in results:
        for name in ("pageviews", "requests", "bots"):
            if imported[name] != truth[name]:
                raise SystemExit(f"{name}: imported {imported[name]}, truth {truth[name]}")
    print(f"lines: {args.lines:,} (truth matched: {truth})")
    print(f"rounds: {args.rounds}, medians of each process's CPU time (user + system)")
    print(f"baseline read+split: {args.lines / base_s:,.0f} lines/s ({base_s:.2f} s)")
    print(f"import with Flask router: {args.lines / import_s:,.0f} lines/s ({import_s:.2f} s)")
    print(f"ratio import/baseline time: {import_s / base_s:.1f}x")
    if against_runs:
        against_s = statistics.median(against_runs)
        print(
            f"import with {args.against}: {args.lines / against_s:,.0f} lines/s ({against_s:.2f} s)"
        )
        print(f"ratio {args.against} import/baseline time: {against_s / base_s:.1f}x")
        print(f"the import with {args.against} takes {against_s / import_s:.2f}x this one's CPU")
    print(
        f"peak RSS: {result['peak_rss_mb']:.0f} MB for {args.lines:,} lines, "
        f"{small_result['peak_rss_mb']:.0f} MB for {args.lines // 5:,}"
    )


if __name__ == "__main__":
    main()
