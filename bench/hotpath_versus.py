"""Hot-path cost of this checkout against an earlier revision, in one process.

Run from the repository root: .venv/bin/python bench/hotpath_versus.py --rev REV

The SDK at REV (``git archive``) is imported as a second package, ``headcount_rev``, so
both versions record the same requests (bench/hotpath.py's fixed requests and its
log-like stream, warm) in the same process, in interleaved rounds whose order is
shuffled every round; medians. Ratios below 1 mean this checkout is cheaper.
prometheus_client's Counter+Histogram on the fixed request is measured alongside.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import random
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

import hotpath
from _provenance import ROOT, print_provenance

_IMPORT = re.compile(r"\b(from|import) headcount\b")


def load_revision(rev: str, into: Path) -> ModuleType:
    """The SDK package at ``rev``, importable as ``headcount_rev``."""
    archive = subprocess.run(
        ["git", "archive", rev, "sdk/headcount"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "headcount_rev"
    (into / "sdk" / "headcount").rename(package)
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        source.write_text(_IMPORT.sub(r"\1 headcount_rev", text), encoding="utf-8")
    sys.path.insert(0, str(into))
    return importlib.import_module("headcount_rev")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=100_000)
    args = parser.parse_args()
    print_provenance()
    import headcount

    calls = args.per_round * (args.rounds + 1)
    kinds, log = hotpath.log_stream(args.warm + calls * 3)
    pageviews = [info for kind, info in zip(kinds, log, strict=True) if kind == "pageview"]
    warm_views = kinds[: args.warm].count("pageview")
    runners: dict[str, Callable[[int], None]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        previous = load_revision(args.rev, Path(scratch))
        for name, package in (("rev", previous), ("this", headcount)):

            def tracker(package: Any = package) -> Any:
                return package.Tracker(
                    "http://collector.invalid",
                    "bench-token",
                    flush_interval=86400,
                    transport=httpx.MockTransport(lambda request: httpx.Response(202, json={})),
                )

            stream = tracker()
            runners[f"{name} stream warm"] = hotpath.replay(
                log[args.warm :], stream.record_request, log[: args.warm], stream._state.table.swap
            )
            views = tracker()
            runners[f"{name} stream warm, pageviews"] = hotpath.replay(
                pageviews[warm_views:][:calls],
                views.record_request,
                pageviews[:warm_views],
                views._state.table.swap,
            )
            for kind, info in hotpath.REQUESTS.items():
                record = tracker().record_request

                def run(n: int, record: Callable[[Any], None] = record, info: Any = info) -> None:
                    for _ in range(n):
                        record(info)

                runners[f"{name} {kind}"] = run
        runners["prometheus"] = hotpath.prometheus_runner()
        medians = measure_shuffled(runners, args.rounds, args.per_round)

    prometheus = medians["prometheus"]
    print(f"against {args.rev}: median ns per request ({args.rounds} rounds x {args.per_round})")
    print(f"{'':28} {'rev ns':>8} {'this ns':>8} {'this/rev':>9} {'rev/prom':>9} {'this/prom':>10}")
    for name in [name.removeprefix("this ") for name in runners if name.startswith("this ")]:
        before, after = medians[f"rev {name}"], medians[f"this {name}"]
        print(
            f"{name:28} {before:8.0f} {after:8.0f} {after / before:9.2f}"
            f" {before / prometheus:9.2f} {after / prometheus:10.2f}"
        )
    print(f"prometheus_client counter+histogram: {prometheus:.0f} ns")


def measure_shuffled(
    runners: dict[str, Callable[[int], None]], rounds: int, per_round: int
) -> dict[str, float]:
    """Like hotpath.measure, in a new random order every round: a slow spell on a shared
    machine then falls on a different runner each time."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(per_round)
    order = list(runners.items())
    shuffle = random.Random(18).shuffle
    gc.disable()
    try:
        for _ in range(rounds):
            shuffle(order)
            for name, run in order:
                start = time.perf_counter_ns()
                run(per_round)
                samples[name].append((time.perf_counter_ns() - start) / per_round)
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


if __name__ == "__main__":
    main()
