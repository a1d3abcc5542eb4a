"""Remembering batch ids: the cost of a group commit of small batches, by how ids are stored.

    .venv/bin/python bench/ingest_ids.py [--remembered 300000] [--rounds 5] [--store postgres] --against OLD

OLD is another checkout's root (e.g. a ``git worktree`` of an earlier commit): its
``collector/`` and ``sdk/`` are imported instead of this one's, in a separate process,
interleaved round by round with this checkout. Both run the same work through their own
store's ``commit`` (SQLite: WAL, ``synchronous=FULL``, as the collector runs it;
PostgreSQL: a scratch database on $HEADCOUNT_BENCH_POSTGRES, created and dropped):

- first the database is filled with ``--remembered`` ids, as a busy site's dedupe window
  holds them, from 200 senders laid out as the SDK names its batches (wire.Batch);
- then groups of 32 one-record batches from 4 senders, as the group commit takes them
  from app processes sending small batches, are committed one after another.

Prints each side's CPU and wall time per group commit (medians of rounds) and their
ratio. No HTTP: ``bench/ingest.py --scenarios one`` measures the same over a real server.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from _provenance import print_provenance

UTC = ZoneInfo("UTC")
SERVER = os.environ.get("HEADCOUNT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

GROUP = 32
GROUPS = 400
PREFILL_GROUP = 500


class Senders:
    """Batch ids as the SDK makes them: a sender's 6 digits, its count, 18 random."""

    def __init__(self, count: int) -> None:
        self.names = [secrets.token_hex(3) for _ in range(count)]
        self.counts = [secrets.randbits(32) for _ in range(count)]
        self.turn = 0

    def next_id(self) -> str:
        sender = self.turn % len(self.names)
        self.turn += 1
        count = self.counts[sender] = (self.counts[sender] + 1) & 0xFFFFFFFF
        return f"{self.names[sender]}{count:08x}{secrets.token_hex(9)}"


def measure(remembered: int, kind: str) -> dict[str, float]:
    """Runs in the child: fill, then time the group commits."""
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "sqlite":
            from headcount_collector.stores.sqlite import SQLiteStore

            return _measure(SQLiteStore(Path(tmp) / "ids.sqlite3"), remembered)
        import psycopg

        from headcount_collector.stores.postgres import PostgresStore

        name = f"headcount_bench_ids_{os.getpid()}"
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            return _measure(PostgresStore(f"{SERVER.rsplit('/', 1)[0]}/{name}"), remembered)
        finally:
            with psycopg.connect(SERVER, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(store: Any, remembered: int) -> dict[str, float]:
    from headcount_collector.pending import PendingBatch

    hour = int(time.time()) // 3600 * 3600
    # A pageview of "/" from no referrer, an entry, in the pageview table's column order.
    page: tuple[str | int, ...] = ("/", "(direct)", "", "", "", 1)

    def batch(batch_id: str) -> PendingBatch:
        return PendingBatch("bench", batch_id, {("pageview", hour, page): 1}, 1, None, UTC)

    store.migrate()
    filler = Senders(200)
    for _ in range(remembered // PREFILL_GROUP):
        store.commit([batch(filler.next_id()) for _ in range(PREFILL_GROUP)], hour)
    live = Senders(4)
    groups = [[batch(live.next_id()) for _ in range(GROUP)] for _ in range(GROUPS)]
    store.commit(groups[0], hour)
    cpu, wall = time.process_time(), time.perf_counter()
    for group in groups[1:]:
        store.commit(group, hour)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    store.close()
    n = GROUPS - 1
    return {"cpu_ms": cpu / n * 1e3, "wall_ms": wall / n * 1e3}


def _child(root: Path | None, remembered: int, kind: str) -> dict[str, float]:
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = f"{root / 'collector'}{os.pathsep}{root / 'sdk'}"
    done = subprocess.run(
        [sys.executable, __file__, "--_measure", str(remembered), "--store", kind],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remembered", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, required=False, help="another checkout's root")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--_measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure is not None:
        print(json.dumps(measure(args._measure, args.store)))
        return
    print_provenance()
    if args.against is None:
        raise SystemExit("--against OLD is required: the ratio is against another checkout")
    this: list[dict[str, float]] = []
    other: list[dict[str, float]] = []
    for round_index in range(args.rounds):
        pair = [(this, None), (other, args.against)]
        for results, root in pair if round_index % 2 == 0 else pair[::-1]:
            results.append(_child(root, args.remembered, args.store))
    print(
        f"{args.store}: groups of {GROUP} one-record batches from 4 senders, {GROUPS - 1} commits, after "
        f"{args.remembered:,} remembered ids; medians of {args.rounds} interleaved rounds"
    )
    for field in ("cpu_ms", "wall_ms"):
        mine = statistics.median(r[field] for r in this)
        theirs = statistics.median(r[field] for r in other)
        print(
            f"{field.replace('_ms', '')} per group commit: this checkout {mine:.3f} ms, "
            f"{args.against} {theirs:.3f} ms, ratio {mine / theirs:.2f}x"
        )


if __name__ == "__main__":
    main()
