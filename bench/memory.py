"""Memory under sustained load: the collector's RSS, and the SDK under a route flood.

Run: .venv/bin/python bench/memory.py [--seconds 60] [--rounds 3] [--skip-collector]
     (needs wrk: apt-get install -y wrk)

1. Collector: ``headcount-collector serve`` (SQLite, 1 worker) under wrk for
   ``--seconds`` with 1-record batches (each a new batch id, so the duplicate table grows
   all along). VmRSS of the server's processes is sampled every second: first, last,
   max, and the slope after a 10 s warm-up (least squares, KiB/s), which must be ~0.
   Baseline, same load and sampling: the bare Starlette endpoint of bench/ingest.py.
2. SDK: a fresh process records 1,000,000 requests with a Tracker (nothing sent),
   once over 1,000,000 distinct route templates (a flood: a router that mistakes ids
   for templates) and once over 10,000 (the baseline, the default ``max_keys``).
   Reported: RSS growth and peak (VmHWM) of the process; the flood must stay bounded by
   the ``max_keys`` cap, i.e. close to the baseline. Interleaved rounds, medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _load import Server, current_hour, run_wrk, site_file, start_collector
from _provenance import print_provenance
from headcount import wire
from ingest import one_record_script, start_baseline

SDK_REQUESTS = 1_000_000


def proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def sdk_child(distinct: int) -> None:
    """Record SDK_REQUESTS requests over ``distinct`` templates; print the memory figures."""
    import gc

    import httpx

    import headcount
    from headcount import RequestInfo

    letters = "abcdefghijklmnopqrstuvwxyz"

    def word(n: int) -> str:
        out = []
        for _ in range(5):
            n, r = divmod(n, 26)
            out.append(letters[r])
        return "".join(out)

    accept = httpx.MockTransport(lambda request: httpx.Response(202))
    tracker = headcount.Tracker(
        "http://collector.invalid", "bench-token", flush_interval=86400, transport=accept
    )
    gc.collect()
    before = proc_kib("VmRSS")
    started = time.perf_counter()
    for i in range(SDK_REQUESTS):
        # Letters only, so each is a valid, distinct template (no digit runs).
        route = "/flood/" + word(i % distinct)
        tracker.record_request(RequestInfo("GET", route, 200, 0.01))
    took = time.perf_counter() - started
    gc.collect()
    after = proc_kib("VmRSS")
    stats = tracker.stats()
    keys = len(tracker.peek())
    print(
        json.dumps(
            {
                "growth_kib": after - before,
                "hwm_kib": proc_kib("VmHWM"),
                "keys": keys,
                "overflowed": stats.overflowed,
                "ns_per_call": took / SDK_REQUESTS * 1e9,
            }
        )
    )
    tracker.shutdown(0)


def run_sdk_child(distinct: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--sdk-child", str(distinct)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def sample_rss(server: Server, seconds: float, samples: list[int], stop: threading.Event) -> None:
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        samples.append(server.rss_kib())
        stop.wait(1.0)


def slope_kib_per_s(samples: list[int], skip: int = 10) -> float:
    tail = samples[skip:] if len(samples) > skip + 2 else samples
    xs = list(range(len(tail)))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(tail)
    denominator = sum((x - mean_x) ** 2 for x in xs) or 1.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, tail, strict=True)) / denominator


def load_with_sampling(server: Server, script: str, seconds: float) -> tuple[list[int], float]:
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server, seconds + 1, samples, stop))
    sampler.start()
    try:
        result = run_wrk(server.url + wire.INGEST_PATH, script, seconds=seconds, connections=64)
    finally:
        stop.set()
        sampler.join()
    return samples, result.rps


def collector_part(seconds: float) -> None:
    print(f"collector RSS under {seconds:g} s of wrk load (1-record batches), 1 worker")
    print()
    print("| server | req/s | RSS first MiB | last MiB | max MiB | slope after 10 s KiB/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    script = one_record_script(current_hour())
    with tempfile.TemporaryDirectory(prefix="hc-bench-memory-", dir="/var/tmp") as tmp:
        directory = Path(tmp)
        config = site_file(directory)
        figures = {}
        for name in ("bare", "collector"):
            server = (
                start_baseline("bare", directory, 1)
                if name == "bare"
                else start_collector(
                    "collector", directory, config, f"sqlite:///{directory / 'm.sqlite3'}"
                )
            )
            try:
                samples, rps = load_with_sampling(server, script, seconds)
            finally:
                server.stop()
            slope = slope_kib_per_s(samples)
            figures[name] = samples
            print(
                f"| {name} | {rps:,.0f} | {samples[0] / 1024:.1f} | {samples[-1] / 1024:.1f} "
                f"| {max(samples) / 1024:.1f} | {slope:+.1f} |",
                flush=True,
            )
    growth = (figures["collector"][-1] - figures["collector"][0]) / 1024
    print()
    print(
        f"collector: last/bare last = {figures['collector'][-1] / figures['bare'][-1]:.2f}x; "
        f"grew {growth:.1f} MiB over the run; slope "
        f"{slope_kib_per_s(figures['collector']):+.1f} KiB/s "
        f"({'flat' if abs(slope_kib_per_s(figures['collector'])) < 50 else 'NOT FLAT'}: "
        "goal |slope| < 50 KiB/s)"
    )


def sdk_part(rounds: int) -> None:
    print()
    print(f"SDK memory: {SDK_REQUESTS:,} recorded requests, default max_keys=10,000")
    results: dict[int, list[dict[str, float]]] = {10_000: [], SDK_REQUESTS: []}
    for round_no in range(rounds):
        order = [10_000, SDK_REQUESTS] if round_no % 2 == 0 else [SDK_REQUESTS, 10_000]
        for distinct in order:
            results[distinct].append(run_sdk_child(distinct))
    print()
    print("| distinct routes | RSS growth MiB | peak RSS MiB | keys held | overflowed | ns/call |")
    print("| --- | --- | --- | --- | --- | --- |")
    medians: dict[int, dict[str, float]] = {}
    for distinct, runs in results.items():
        medians[distinct] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        m = medians[distinct]
        print(
            f"| {distinct:,} | {m['growth_kib'] / 1024:.1f} | {m['hwm_kib'] / 1024:.1f} "
            f"| {m['keys']:,.0f} | {m['overflowed']:,.0f} | {m['ns_per_call']:.0f} |"
        )
    flood, base = medians[SDK_REQUESTS], medians[10_000]
    ratio = flood["hwm_kib"] / base["hwm_kib"]
    print()
    print(
        f"flood peak RSS / baseline peak RSS = {ratio:.2f}x "
        f"({'bounded' if ratio < 1.5 else 'NOT BOUNDED'}: goal < 1.5x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-collector", action="store_true")
    parser.add_argument("--sdk-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sdk_child:
        sdk_child(args.sdk_child)
        return
    print_provenance()
    if not args.skip_collector:
        collector_part(args.seconds)
    sdk_part(args.rounds)


if __name__ == "__main__":
    main()
