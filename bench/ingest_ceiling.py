"""How far a writer outside the event loop's process could take 1-record ingest, at most.

Run: .venv/bin/python bench/ingest_ceiling.py [--rounds 5] [--seconds 5] [--connections 64]
     (needs wrk: apt-get install -y wrk)

``bench/ingest.py`` misses its 1-record goal (>= 70 % of a bare Starlette endpoint's
rate), and the way it is explained is that the writer thread's work, serialised with the
event loop by the GIL, would have to leave the process. Before anyone builds a writer
process, this measures the most one could give: the collector app exactly as shipped
(the plain ASGI ingest endpoint, decoding, validation, the group committer's futures and
thread hand-off, the answer) with a store whose ``commit`` returns at once, as if another
process wrote every batch at no cost to this one. Three servers, each a separate process
under the same uvicorn settings (uvloop, httptools, one worker, no access log), loaded by
wrk with 1-record batches, a fresh batch id each; rounds interleaved with the order
rotated:

- ``bare``: the bare endpoint of ``bench/ingest.py`` (read the body, answer 204);
- ``no commit``: the collector's ingest endpoint alone, served as the whole app, with a
  committer that answers every batch at once (no writer thread, no future): what reading,
  decoding, validating and answering cost, without the hand-off to a writer;
- ``no-op store``: the collector with that store (the ceiling);
- ``collector``: the collector with its SQLite store, as shipped.

Figures: medians over the rounds of req/s and of server CPU per request (user + system
of the server's processes, from /proc), each against ``bare`` from the same rounds.
Internal use: ``--serve bare|nocommit|noop|sqlite --port N --config F --db F``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from starlette.types import ASGIApp

from _load import (
    Samples,
    Server,
    current_hour,
    ratio_text,
    run_wrk,
    site_file,
    spawn,
)
from _provenance import print_provenance
from headcount import wire
from headcount_collector._processes import free_port
from headcount_collector.groupcommit import GroupCommitter
from headcount_collector.pending import PendingBatch
from headcount_collector.stores.sqlite import SQLiteStore
from ingest import bare_app, one_record_script

KINDS = ("bare", "nocommit", "noop", "sqlite")
LABELS = {
    "bare": "bare endpoint",
    "nocommit": "ingest endpoint, no commit",
    "noop": "no-op store",
    "sqlite": "collector (SQLite)",
}


class NoWriteStore(SQLiteStore):
    """The SQLite store for everything but ``commit``, which applies nothing and says
    every batch was new: a writer that costs this process nothing."""

    def commit(self, batches: Sequence[PendingBatch], now: int) -> list[bool]:
        return [True] * len(batches)


class AnsweringCommitter(GroupCommitter):
    """Says every batch is stored the moment it is submitted; never started."""

    async def submit(self, batch: PendingBatch) -> bool:
        return True


def serve(kind: str, port: int, config: str, db: str) -> None:
    import time

    import uvicorn

    from headcount_collector.app import IngestEndpoint, create_app
    from headcount_collector.config import Settings, load_sites
    from headcount_collector.ingest import DEFAULT_DEDUPE_SECONDS

    app: ASGIApp
    if kind == "bare":
        app = bare_app()
    elif kind == "nocommit":
        committer = AnsweringCommitter(NoWriteStore(db))
        app = IngestEndpoint(load_sites(config), committer, time.time, DEFAULT_DEDUPE_SECONDS)
    else:
        store = NoWriteStore(db) if kind == "noop" else SQLiteStore(db)
        store.migrate()
        settings = Settings(config_path=config, db_url=f"sqlite:///{db}", port=port)
        app = create_app(settings, store, load_sites(config))
    # The uvicorn settings of `headcount-collector serve`, without its client limits
    # (which bench/ingest.py --protocols measures on their own).
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False,
        proxy_headers=False, server_header=False, log_level="warning", log_config=None,
    )  # fmt: skip


def start(kind: str, directory: Path, config: Path) -> Server:
    argv = [
        sys.executable, __file__, "--serve", kind, "--port", str(free_port()),
        "--config", str(config), "--db", str(directory / f"{kind}.sqlite3"),
    ]  # fmt: skip
    health = "/healthz" if kind in ("noop", "sqlite") else wire.INGEST_PATH
    return spawn(kind, argv, directory, health)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.config, args.db)
        return
    print_provenance()
    script = one_record_script(current_hour())
    print(
        f"1-record ingest ceiling: {args.rounds} rounds x {args.seconds:g} s, one worker, "
        f"wrk -t{args.threads} -c{args.connections}",
        flush=True,
    )
    rates = {kind: Samples() for kind in KINDS}
    cpu = {kind: Samples() for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="hc-bench-ceiling-", dir="/var/tmp") as tmp:
        directory = Path(tmp)
        config = site_file(directory)
        servers: dict[str, Server] = {}
        try:
            for kind in KINDS:
                servers[kind] = start(kind, directory, config)

            def load(kind: str, seconds: float) -> tuple[float, float]:
                server = servers[kind]
                before = server.cpu_seconds()
                result = run_wrk(
                    server.url + wire.INGEST_PATH, script, seconds=seconds,
                    threads=args.threads, connections=args.connections,
                )  # fmt: skip
                if result.errors or result.non_2xx:
                    print(
                        f"  warning: {kind}: {result.errors} socket errors, "
                        f"{result.non_2xx} non-2xx answers",
                        flush=True,
                    )
                used = server.cpu_seconds() - before
                return result.rps, used / max(result.requests, 1) * 1e6

            for kind in KINDS:
                load(kind, 2)  # warm-up
            for round_no in range(args.rounds):
                order = KINDS[round_no % len(KINDS) :] + KINDS[: round_no % len(KINDS)]
                for kind in order:
                    rate, per_request = load(kind, args.seconds)
                    rates[kind].add(rate)
                    cpu[kind].add(per_request)
                print(
                    f"round {round_no + 1}: "
                    + ", ".join(
                        f"{kind} {rates[kind].values[-1]:,.0f} req/s {cpu[kind].values[-1]:.1f} µs"
                        for kind in KINDS
                    ),
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()
    bare_rate, bare_cpu = rates["bare"].median, cpu["bare"].median
    print()
    print("| server | req/s | against bare | server CPU per request | against bare |")
    print("| --- | --- | --- | --- | --- |")
    for kind in KINDS:
        print(
            f"| {LABELS[kind]} | {rates[kind].median:,.0f} | "
            f"{ratio_text(rates[kind].median, bare_rate)} | {cpu[kind].median:.1f} µs | "
            f"{cpu[kind].median / bare_cpu:.2f}x |"
        )
    print()
    print(
        "goal of bench/ingest.py: >= 70 % of bare; the no-op store is the most a writer "
        "outside this process could give"
    )


if __name__ == "__main__":
    main()
