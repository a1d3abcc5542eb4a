"""Collector ingest throughput against baselines measured in the same run.

Run: .venv/bin/python bench/ingest.py [--rounds 3] [--seconds 10] [--workers 1]
     [--threads 2] [--connections 64]        (needs wrk: apt-get install -y wrk)

Every server is a separate process under uvicorn with uvloop and httptools and the same
worker count; wrk (Lua-scripted POSTs, a fresh batch_id on every request) is the load.
Scenarios, A/B-interleaved round by round (the order flips every round), medians
reported:

1. 1-record batches: ``headcount-collector serve`` (SQLite, acknowledged only after the
   group commit's fsync) vs. a bare Starlette endpoint that reads the body and answers
   204. Goal: >= 70 % of the bare request rate (aim 85 %). Also printed: each server's
   CPU time (user + system, from /proc) per request, which moves far less than the rate
   with the rest of a shared machine's load.
2. 500-record batches drawn from a realistic key space (many senders reporting the same
   ~3,000 route/dimension keys of the current hour): collector vs. an endpoint that only
   decodes the body with ``msgspec.json.Decoder(headcount.wire.Batch)``. Goal: >= 50 %.
3. 500-record batches where every record is a new key, as at an hour's rollover (the
   site's route templates repeat, the keys do not; the key cap is raised out of the way,
   so this measures storing new keys, not folding them into (other)): collector
   records/s vs. SQLite's own upsert rate for 1,000-row transactions of new keys on the
   same schema and pragmas (WAL, synchronous=FULL), a plain sqlite3 loop. Goal: >= 50 %.

``--scenarios one,new`` runs only some of them (and only their servers). The new-key
scenario uses ``--new-connections`` (default 8), not 64: see its help.

``--protocols`` runs a different comparison instead: what the client limits cost
(issue 12 §3). The same collector app, on 1-record and realistic 500-record batches,
served three ways: uvicorn's plain httptools protocol (the baseline, no limits),
``headcount-collector serve`` (httptools with the limits of ``serverlimits.py``), and
uvicorn's h11 protocol with ``h11_max_incomplete_event_size`` (h11's own header limit).

Internal use: ``ingest.py --serve bare|decode|collector-httptools|collector-h11 --port N
--workers N`` runs a baseline.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from _load import (
    ID_LUA,
    SITE,
    WRITE_TOKEN,
    Samples,
    Server,
    current_hour,
    lua_string,
    ratio_text,
    run_wrk,
    site_file,
    spawn,
    start_collector,
    verdict,
)
from _provenance import print_provenance
from headcount import wire
from headcount_collector._processes import free_port
from headcount_collector.stores.sqlite import SQLiteStore

BIG_BATCH = 500
KEY_SPACE = 3000
BODY_VARIANTS = 32
NEW_KEY_ROUTES = 4000
# The new-key collector's per-hour key cap, far above what one run writes, so that the
# scenario measures storing new keys rather than folding them into (other).
NEW_KEY_CAP = 100_000_000


# --- baseline servers -------------------------------------------------------------------


def bare_app() -> Starlette:
    async def ingest(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    return Starlette(routes=[Route(wire.INGEST_PATH, ingest, methods=["POST"])])


def decode_app() -> Starlette:
    decoder = msgspec.json.Decoder(wire.Batch)

    async def ingest(request: Request) -> Response:
        decoder.decode(await request.body())
        return Response(status_code=204)

    return Starlette(routes=[Route(wire.INGEST_PATH, ingest, methods=["POST"])])


def serve_collector(http: str, port: int, workers: int, config: str, db_url: str) -> None:
    """The collector app under uvicorn directly, with a given HTTP protocol and no limits."""
    import os

    import uvicorn

    from headcount_collector.cli import SETTINGS_ENV
    from headcount_collector.config import Settings

    settings = Settings(config_path=config, db_url=db_url, port=port, workers=workers)
    os.environ[SETTINGS_ENV] = msgspec.json.encode(settings).decode()
    options: dict[str, object] = {"http": http}
    if http == "h11":
        options["h11_max_incomplete_event_size"] = 16 * 1024  # the guarded header limit
    uvicorn.run(
        "headcount_collector.cli:app_from_environment",
        factory=True, host="127.0.0.1", port=port, workers=workers, loop="uvloop",
        access_log=False, proxy_headers=False, server_header=False, log_level="warning",
        log_config=None, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def start_collector_under(
    http: str, directory: Path, config: Path, db: Path, workers: int
) -> Server:
    argv = [
        sys.executable, __file__, "--serve", f"collector-{http}", "--port", str(free_port()),
        "--workers", str(workers), "--config", str(config), "--db", f"sqlite:///{db}",
    ]  # fmt: skip
    return spawn(f"collector-{http}", argv, directory, "/healthz")


def serve_baseline(kind: str, port: int, workers: int) -> None:
    import uvicorn

    # The same uvicorn settings as `headcount-collector serve` (see collector cli.py).
    uvicorn.run(
        f"ingest:{kind}_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_level="warning",
        log_config=None,
    )


def start_baseline(kind: str, directory: Path, workers: int) -> Server:
    argv = [
        sys.executable, __file__, "--serve", kind, "--port", str(free_port()),
        "--workers", str(workers),
    ]  # fmt: skip
    return spawn(kind, argv, directory, wire.INGEST_PATH)


# --- request bodies (wrk Lua scripts) -----------------------------------------------------

_HEADERS_LUA = f"""
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {WRITE_TOKEN}"
wrk.headers["Content-Type"] = "application/json"
local HEAD = '{{"batch_id":"'
local MID = '","sender":"bench","sender_version":"1.0","records":['
"""


def one_record_script(hour: int) -> str:
    record = (
        f'{{"kind":"pageview","hour":{hour},"route":"/","referrer":"(direct)","entry":true,"n":1}}'
    )
    return (
        ID_LUA
        + _HEADERS_LUA
        + f"""
local RECORDS = {lua_string(record)}
request = function()
  return wrk.format(nil, "{wire.INGEST_PATH}", nil, HEAD .. next_id() .. MID .. RECORDS .. "]}}")
end
"""
    )


def realistic_keys(hour: int, rng: random.Random) -> list[dict[str, object]]:
    """~3,000 keys a mid-sized site reports in one hour: requests and pageviews."""
    routes = [f"/s{a}/p{b}" for a in range(30) for b in range(40)]  # 1,200 templates
    referrers = ["(direct)", "(internal)", "google.com", "duckduckgo.com", "ycombinator.com"]
    keys: dict[tuple[object, ...], dict[str, object]] = {}
    while len(keys) < KEY_SPACE:
        route = rng.choice(routes)
        if rng.random() < 0.6:
            method = rng.choice(["GET", "GET", "GET", "POST"])
            status = rng.choice(["2xx", "2xx", "2xx", "3xx", "4xx"])
            latency = rng.choice(wire.LATENCY_LABELS[:5])
            keys[("r", route, method, status, latency)] = {
                "kind": "request", "hour": hour, "route": route, "method": method,
                "status": status, "latency": latency,
            }  # fmt: skip
        else:
            referrer = rng.choice(referrers)
            keys[("p", route, referrer)] = {
                "kind": "pageview", "hour": hour, "route": route, "referrer": referrer,
                "entry": referrer != "(internal)",
            }  # fmt: skip
    return list(keys.values())


def realistic_script(hour: int, seed: int = 8) -> str:
    rng = random.Random(seed)
    pool = realistic_keys(hour, rng)
    variants = []
    for _ in range(BODY_VARIANTS):
        # One sender's batch: distinct keys (the SDK merges), each with some count.
        records = [{**key, "n": rng.randint(1, 40)} for key in rng.sample(pool, BIG_BATCH)]
        variants.append(msgspec.json.encode(records).decode()[1:-1])
    table = ",\n".join(lua_string(v) for v in variants)
    return (
        ID_LUA
        + _HEADERS_LUA
        + f"""
local VARIANTS = {{ {table} }}
request = function()
  local records = VARIANTS[math.random(1, #VARIANTS)]
  return wrk.format(nil, "{wire.INGEST_PATH}", nil, HEAD .. next_id() .. MID .. records .. "]}}")
end
"""
    )


def new_keys_script(hour: int) -> str:
    """Every record a key the database has not seen, as at an hour's rollover: the site's
    route templates repeat (a pool of NEW_KEY_ROUTES, checked once each, as a real site's
    are), the keys do not. A route word made from wrk's per-run nonce (letters g-v, never
    hex) keeps every round's keys new; within a run, each thread walks route x method x
    status x latency before any key repeats."""
    methods = ", ".join(f'"{m}"' for m in wire.METHODS)
    statuses = ", ".join(f'"{s}"' for s in wire.STATUS_CLASSES)
    latencies = ", ".join(lua_string(label) for label in wire.LATENCY_LABELS)
    return (
        ID_LUA
        + _HEADERS_LUA
        + f"""
local LETTERS = "abcdefghijklmnopqrstuvwxyz"
local METHODS = {{ {methods} }}
local STATUSES = {{ {statuses} }}
local LATENCIES = {{ {latencies} }}
local function word(n)
  local t = {{}}
  for i = 1, 6 do
    local r = n % 26
    t[i] = LETTERS:sub(r + 1, r + 1)
    n = math.floor(n / 26)
  end
  return table.concat(t)
end
local run_word = nil
local keys = 0
request = function()
  if run_word == nil then
    local t = {{ LETTERS:sub(tid, tid) }}
    for i = 1, 5 do
      local d = tonumber(NONCE:sub(i, i), 16)
      t[i + 1] = LETTERS:sub(7 + d, 7 + d)
    end
    run_word = table.concat(t)
  end
  local parts = {{}}
  for i = 1, {BIG_BATCH} do
    local k = keys
    keys = keys + 1
    local route = word(k % {NEW_KEY_ROUTES})
    local c = math.floor(k / {NEW_KEY_ROUTES})
    local method = METHODS[c % #METHODS + 1]
    c = math.floor(c / #METHODS)
    local status = STATUSES[c % #STATUSES + 1]
    c = math.floor(c / #STATUSES)
    local latency = LATENCIES[c % #LATENCIES + 1]
    parts[i] = '{{"kind":"request","hour":{hour},"route":"/n/' .. run_word .. '/' .. route
      .. '","method":"' .. method .. '","status":"' .. status .. '","latency":"' .. latency
      .. '","n":1}}'
  end
  return wrk.format(nil, "{wire.INGEST_PATH}", nil,
    HEAD .. next_id() .. MID .. table.concat(parts, ",") .. "]}}")
end
"""
    )


# --- the SQLite baseline ----------------------------------------------------------------


def sqlite_upsert_rate(path: Path, seconds: float, rows_per_txn: int = 1000) -> float:
    """Rows/s of new-key upserts into the collector's own table, same pragmas."""
    if not path.exists():
        SQLiteStore(path).migrate()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    # Written out rather than taken from the store, so the baseline stays a plain loop.
    sql = (
        "INSERT INTO hc_request (site, res, bucket, route, method, status, latency, n) "
        "VALUES (?, 'h', ?, ?, ?, ?, ?, ?) ON CONFLICT "
        "(site, res, bucket, route, method, status, latency) DO UPDATE SET n = hc_request.n + excluded.n"
    )
    hour = current_hour()
    run = "".join(random.choices(string.ascii_lowercase, k=6))
    rows = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        params = [
            (SITE, hour, f"/n/{run}/{rows + i}", "GET", "2xx", "<10ms", 1)
            for i in range(rows_per_txn)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, params)
        conn.execute("COMMIT")
        rows += rows_per_txn
    elapsed = time.perf_counter() - start
    conn.close()
    return rows / elapsed


def stored_batches(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM hc_batch").fetchone()[0])
    finally:
        conn.close()


# --- the run ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--new-connections",
        type=int,
        default=8,
        help="connections for the new-key scenario: each of its groups commits up to that "
        "many 500-record batches, and with 64 a request waits seconds, so most of what is "
        "stored in a short round is still in flight when wrk stops counting",
    )
    parser.add_argument(
        "--scenarios", default="one,realistic,new", help="comma-separated: one, realistic, new"
    )
    parser.add_argument(
        "--protocols", action="store_true", help="compare the HTTP protocols' cost instead"
    )
    parser.add_argument(
        "--serve",
        choices=["bare", "decode", "collector-httptools", "collector-h11"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve in ("collector-httptools", "collector-h11"):
        serve_collector(args.serve.split("-", 1)[1], args.port, args.workers, args.config, args.db)
        return
    if args.serve:
        serve_baseline(args.serve, args.port, args.workers)
        return
    print_provenance()
    if args.protocols:
        compare_protocols(args)
        return

    hour = current_hour()
    makers = {"one": one_record_script, "realistic": realistic_script, "new": new_keys_script}
    chosen = [name for name in makers if name in args.scenarios.split(",")]
    if not chosen:
        parser.error(f"--scenarios: choose from {', '.join(makers)}")
    scripts = {name: makers[name](hour) for name in chosen}
    print(
        f"ingest benchmark: {args.rounds} rounds x {args.seconds:g} s, workers={args.workers}, "
        f"wrk -t{args.threads} -c{args.connections}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="hc-bench-ingest-", dir="/var/tmp") as tmp:
        directory = Path(tmp)
        config = site_file(directory)
        dbs = {name: directory / f"{name}.sqlite3" for name in chosen}
        servers: dict[str, Server] = {}
        try:
            if "one" in chosen:
                servers["bare"] = start_baseline("bare", directory, args.workers)
            if "realistic" in chosen:
                servers["decode"] = start_baseline("decode", directory, args.workers)
            for name, db in dbs.items():
                servers[f"collector-{name}"] = start_collector(
                    f"collector-{name}", directory, config, f"sqlite:///{db}", args.workers,
                    extra=("--max-keys-per-hour", str(NEW_KEY_CAP)) if name == "new" else (),
                )  # fmt: skip
            run_rounds(args, servers, scripts, dbs, directory)
        finally:
            for server in servers.values():
                server.stop()


def run_rounds(
    args: argparse.Namespace,
    servers: dict[str, Server],
    scripts: dict[str, str],
    dbs: dict[str, Path],
    directory: Path,
) -> None:
    # Server CPU per request of each 1-record run: the rate moves with everyone else's
    # load on a shared machine, the CPU a request costs the server much less.
    cpu_per_request = {"bare": Samples(), "collector-one": Samples()}

    def wrk(server: str, script: str, seconds: float) -> tuple[float, int]:
        cpu_before = servers[server].cpu_seconds()
        result = run_wrk(
            servers[server].url + wire.INGEST_PATH,
            scripts[script],
            seconds=seconds,
            threads=args.threads,
            connections=args.new_connections if script == "new" else args.connections,
        )
        if result.errors or result.non_2xx:
            print(
                f"  warning: {server}: {result.errors} socket errors, "
                f"{result.non_2xx} non-2xx answers",
                flush=True,
            )
        if script == "one" and seconds == args.seconds:
            used = servers[server].cpu_seconds() - cpu_before
            cpu_per_request[server].add(used / max(result.requests, 1) * 1e6)
        return result.rps, result.requests

    # (scenario, baseline label, measure the baseline, measure the collector)
    pairs: list[tuple[str, Callable[[], float], Callable[[], float]]] = []
    acknowledged = {name: 0 for name in dbs}

    def collector(name: str) -> Callable[[], float]:
        def measure() -> float:
            rps, requests = wrk(f"collector-{name}", name, args.seconds)
            acknowledged[name] += requests
            return rps

        return measure

    if "one" in dbs:
        pairs.append(("one", lambda: wrk("bare", "one", args.seconds)[0], collector("one")))
    if "realistic" in dbs:
        pairs.append(
            (
                "realistic",
                lambda: wrk("decode", "realistic", args.seconds)[0],
                collector("realistic"),
            )
        )
    sqlite_db = directory / "baseline.sqlite3"
    if "new" in dbs:
        pairs.append(("new", lambda: sqlite_upsert_rate(sqlite_db, args.seconds), collector("new")))

    # Warm-up: first requests pay imports, page cache and JIT-free start-up costs.
    for name in ("bare", "decode"):
        if name in servers:
            wrk(name, "one" if name == "bare" else "realistic", 2)
    for name in dbs:
        wrk(f"collector-{name}", name, 2)
    acknowledged.update(dict.fromkeys(dbs, 0))
    warm = {name: stored_batches(db) for name, db in dbs.items()}

    base = {name: Samples() for name, _, _ in pairs}
    mine = {name: Samples() for name, _, _ in pairs}
    for round_no in range(args.rounds):
        for name, measure_base, measure_mine in pairs:
            order = [(base, measure_base), (mine, measure_mine)]
            if round_no % 2:
                order.reverse()
            for samples, measure in order:
                samples[name].add(measure())
        print(
            f"round {round_no + 1}: "
            + ", ".join(
                f"{n} {mine[n].values[-1]:,.0f} vs {base[n].values[-1]:,.0f}" for n, _, _ in pairs
            ),
            flush=True,
        )

    print()
    print("| scenario | collector | baseline | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    if "one" in mine:
        one_ratio = mine["one"].median / base["one"].median
        print(
            f"| 1-record batches | {mine['one'].median:,.0f} req/s | bare endpoint "
            f"{base['one'].median:,.0f} req/s | {ratio_text(mine['one'].median, base['one'].median)} "
            f"| >= 70 % (aim 85 %): {verdict(one_ratio, 0.70)} |"
        )
        mine_cpu, bare_cpu = cpu_per_request["collector-one"], cpu_per_request["bare"]
        one_cpu = (
            f"| 1-record batches, server CPU per request | {mine_cpu.median:,.1f} µs | bare "
            f"endpoint {bare_cpu.median:,.1f} µs | {mine_cpu.median / bare_cpu.median:.2f}x | - |"
        )
        print(one_cpu)
    if "realistic" in mine:
        big_ratio = mine["realistic"].median / base["realistic"].median
        print(
            f"| 500-record batches, realistic keys | {mine['realistic'].median:,.0f} req/s = "
            f"{mine['realistic'].median * BIG_BATCH:,.0f} records/s | msgspec decode only "
            f"{base['realistic'].median:,.0f} req/s | {big_ratio:.0%} "
            f"| >= 50 %: {verdict(big_ratio, 0.50)} |"
        )
    if "new" in mine:
        new_records = mine["new"].median * BIG_BATCH
        new_ratio = new_records / base["new"].median
        print(
            f"| 500-record batches, every record a new key | {mine['new'].median:,.0f} req/s = "
            f"{new_records:,.0f} records/s | plain sqlite3 upserts, 1,000 rows/txn "
            f"{base['new'].median:,.0f} rows/s | {new_ratio:.0%} "
            f"| >= 50 %: {verdict(new_ratio, 0.50)} |"
        )
    print()
    for name, db in dbs.items():
        stored = stored_batches(db) - warm[name]
        status = "ok" if stored >= acknowledged[name] else "LOST ACKNOWLEDGED BATCHES"
        print(
            f"check {name}: wrk counted {acknowledged[name]:,} acknowledged batches, "
            f"the database holds {stored:,} ({status})"
        )


def compare_protocols(args: argparse.Namespace) -> None:
    hour = current_hour()
    scripts = {"one": one_record_script(hour), "realistic": realistic_script(hour)}
    kinds = ("plain", "guarded", "h11")
    print(
        f"protocol cost: {args.rounds} rounds x {args.seconds:g} s, workers={args.workers}, "
        f"wrk -t{args.threads} -c{args.connections}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="hc-bench-protocols-", dir="/var/tmp") as tmp:
        directory = Path(tmp)
        config = site_file(directory)
        servers: dict[str, Server] = {}
        try:
            servers["plain"] = start_collector_under(
                "httptools", directory, config, directory / "plain.sqlite3", args.workers
            )
            servers["h11"] = start_collector_under(
                "h11", directory, config, directory / "h11.sqlite3", args.workers
            )
            servers["guarded"] = start_collector(
                "guarded", directory, config, f"sqlite:///{directory / 'guarded.sqlite3'}",
                args.workers,
            )  # fmt: skip
            samples = {(k, s): Samples() for k in kinds for s in scripts}

            def measure(kind: str, script: str, seconds: float) -> float:
                result = run_wrk(
                    servers[kind].url + wire.INGEST_PATH,
                    scripts[script],
                    seconds=seconds,
                    threads=args.threads,
                    connections=args.connections,
                )
                if result.errors or result.non_2xx:
                    print(
                        f"  warning: {kind}: {result.errors} socket errors, "
                        f"{result.non_2xx} non-2xx answers",
                        flush=True,
                    )
                return result.rps

            for kind in kinds:
                for script in scripts:
                    measure(kind, script, 2)  # warm-up
            for round_no in range(args.rounds):
                # Rotate the order every round so no server always runs first.
                order = kinds[round_no % 3 :] + kinds[: round_no % 3]
                for script in scripts:
                    for kind in order:
                        samples[kind, script].add(measure(kind, script, args.seconds))
                print(
                    f"round {round_no + 1}: "
                    + ", ".join(
                        f"{k}/{s} {samples[k, s].values[-1]:,.0f}" for s in scripts for k in kinds
                    ),
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()
    print()
    # Two ratios: of the medians, and the median of each round's own ratio (the servers
    # of one round ran back to back, so that one is less exposed to load drifting).
    print("| batches | plain httptools (baseline) | httptools + limits | h11 + max event size |")
    print("| --- | --- | --- | --- |")
    for script, label in (("one", "1 record"), ("realistic", "500 records, realistic keys")):
        base = samples["plain", script]
        cells = [f"{base.median:,.0f} req/s"]
        for kind in ("guarded", "h11"):
            mine = samples[kind, script]
            per_round = statistics.median(
                m / b for m, b in zip(mine.values, base.values, strict=True)
            )
            cells.append(
                f"{mine.median:,.0f} req/s = {ratio_text(mine.median, base.median)} "
                f"(per round {per_round:.0%})"
            )
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()


if __name__ == "__main__":
    main()
