"""Every benchmark, one after another, in bounded time: for a rerun on an idle machine.

Run from the repository root:

    .venv/bin/python bench/run_all.py            # quick settings, at most 90 min (the limits)
    .venv/bin/python bench/run_all.py --full     # the settings docs/benchmarks.md records
    .venv/bin/python bench/run_all.py --only ingest,hotpath

Each script runs in its own process with this interpreter and prints its own figures
(ratios against a baseline of the same run); a script that fails or overruns its time
limit is reported and the rest still run. The last lines list each script's wall time.
``bench/bot_corpus.py`` is not run: it rebuilds test data rather than measuring.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass

from _provenance import ROOT, print_provenance


@dataclass(frozen=True)
class Job:
    name: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    # Seconds the quick settings may take (four times that for --full): generous for an
    # idle machine, so that a stuck script cannot hold up the rest.
    limit: float = 300.0


JOBS = (
    Job("hotpath", "hotpath.py", ("--rounds", "10", "--per-round", "1000"), ()),
    Job("middleware", "middleware.py", ("--quick",), ()),
    Job("middleware_profile", "middleware_profile.py", ("--seconds", "5"), ()),  # needs py-spy
    Job("middleware_layers", "middleware_layers.py", ("--rounds", "3", "--per-round", "3000"), ()),
    Job("bots", "bots.py", ("--rounds", "2"), ()),
    Job("ingest", "ingest.py", ("--rounds", "1", "--seconds", "4"), ("--rounds", "3", "--seconds", "8")),
    Job(
        "ingest_protocols",
        "ingest.py",
        ("--protocols", "--rounds", "1", "--seconds", "3"),
        ("--protocols", "--rounds", "8", "--seconds", "5"),
    ),
    Job(
        "ingest_ceiling",
        "ingest_ceiling.py",
        ("--rounds", "1", "--seconds", "3"),
        ("--rounds", "5", "--seconds", "5"),
    ),
    Job("ingest_commit", "ingest_commit.py", ("--rounds", "3", "--batches", "12"), ()),
    Job("ingest_stores", "ingest_stores.py", ("--seconds", "3"), ()),
    Job("pg_drivers", "pg_drivers.py", ("--rounds", "2", "--rows-per-round", "3000"), ()),
    Job(
        "query_latency",
        "query_latency.py",
        ("--repeats", "10", "--stores", "sqlite"),
        ("--repeats", "30", "--stores", "postgres,sqlite"),
        limit=600.0,  # builds and seals a year of hourly data first
    ),
    Job("dashboard", "dashboard.py", ("--repeats", "5"), ("--repeats", "20"), limit=600.0),
    Job("noise_accuracy", "noise_accuracy.py", ("--replicates", "1"), ("--replicates", "3")),
    Job("memory", "memory.py", ("--seconds", "30", "--rounds", "1"), ("--seconds", "60", "--rounds", "3"), limit=600.0),
    Job("import", "import.py", ("--lines", "200000"), ("--lines", "1000000")),
    Job("registry_keys", "registry_keys.py", ("--rounds", "9"), ("--rounds", "21")),
)  # fmt: skip


def check(jobs: list[Job]) -> None:
    """Exit non-zero when a script no longer accepts an option given here."""
    problems = []
    for job in jobs:
        help_text = subprocess.run(
            [sys.executable, f"bench/{job.script}", "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        for option in {o for o in (*job.quick, *job.full) if o.startswith("--")}:
            if option not in help_text:
                problems.append(f"{job.name}: bench/{job.script} has no {option}")
    if problems:
        raise SystemExit("\n".join(problems))
    print(f"{len(jobs)} jobs: every option is accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the settings the docs record")
    parser.add_argument(
        "--only", help="comma-separated job names: " + ", ".join(j.name for j in JOBS)
    )
    parser.add_argument(
        "--limit", type=float, help="seconds each script may take (default: its own limit)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that every script takes its options"
    )
    args = parser.parse_args()
    chosen = [j for j in JOBS if not args.only or j.name in args.only.split(",")]
    if not chosen:
        parser.error("--only names no job")
    if args.check:
        check(chosen)
        return
    print_provenance()
    took: list[tuple[str, float, str]] = []
    started = time.monotonic()
    for job in chosen:
        argv = [sys.executable, f"bench/{job.script}", *(job.full if args.full else job.quick)]
        print(f"\n=== {job.name}: {' '.join(argv[1:])}", flush=True)
        begin = time.monotonic()
        limit = args.limit or job.limit * (4 if args.full else 1)
        try:
            done = subprocess.run(argv, cwd=ROOT, timeout=limit, check=False)
            outcome = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            outcome = f"STOPPED after {limit:.0f} s"
        took.append((job.name, time.monotonic() - begin, outcome))
    print(f"\n=== all done in {(time.monotonic() - started) / 60:.1f} min")
    for name, seconds, outcome in took:
        print(f"{name:20} {seconds:7.0f} s  {outcome}")


if __name__ == "__main__":
    main()
