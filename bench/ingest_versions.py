"""1-record ingest against other checkouts: server CPU per request, servers pinned.

    .venv/bin/python bench/ingest_versions.py --against OLD [--against OLD2] [--rounds 10]

OLD is another checkout's root (e.g. a ``git worktree`` of an earlier commit). One
``headcount-collector serve`` per checkout (its ``collector/`` and ``sdk/`` by
``PYTHONPATH``, each on its own SQLite file, one worker) runs side by side with this
checkout's, all pinned to CPU 0 while wrk (``-t2 -c64``, 1-record batches, a fresh
batch id per request, as ``bench/ingest.py``) runs on CPU 1: pinned, a server's CPU
time per request scatters far less than its request rate does when wrk and the server
share both cores. Rounds are interleaved, the order rotating every round; each figure is
the median over rounds, and each checkout's ratio is against this one's.

Needs two CPUs, ``taskset`` and ``wrk``. About 20 s per round for three checkouts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from _load import Server, current_hour, run_wrk, site_file, start_collector
from _provenance import print_provenance
from headcount import wire
from ingest import one_record_script

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU, WRK_CPU = "0", "1"


def start(name: str, root: Path, directory: Path, config: Path) -> Server:
    """``root``'s collector, pinned to the server's CPU, on its own SQLite file."""
    path = f"PYTHONPATH={root / 'collector'}{os.pathsep}{root / 'sdk'}"
    return start_collector(
        name, directory, config, f"sqlite:///{directory / name}.sqlite3",
        launcher=("env", path, "taskset", "-c", SERVER_CPU),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        raise SystemExit("needs two CPUs and taskset")
    os.sched_setaffinity(0, {int(WRK_CPU)})  # wrk, started from here, inherits it
    print_provenance()
    roots = {"this": ROOT} | {str(path): path.resolve() for path in args.against}
    script = one_record_script(current_hour())
    with tempfile.TemporaryDirectory(prefix="hc-bench-versions-", dir="/var/tmp") as tmp:
        directory = Path(tmp)
        config = site_file(directory)
        servers: dict[str, Server] = {}
        try:
            for index, (name, root) in enumerate(roots.items()):
                servers[name] = start(f"server{index}", root, directory, config)
            for server in servers.values():  # warm-up
                run_wrk(server.url + wire.INGEST_PATH, script, seconds=2)
            cpu: dict[str, list[float]] = {name: [] for name in servers}
            rate: dict[str, list[float]] = {name: [] for name in servers}
            names = list(servers)
            for round_index in range(args.rounds):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    server = servers[name]
                    before = server.cpu_seconds()
                    result = run_wrk(server.url + wire.INGEST_PATH, script, seconds=args.seconds)
                    used = server.cpu_seconds() - before
                    cpu[name].append(used / max(result.requests, 1) * 1e6)
                    rate[name].append(result.rps)
                print(
                    f"round {round_index + 1}: "
                    + ", ".join(f"{n} {cpu[n][-1]:.1f} µs {rate[n][-1]:,.0f}/s" for n in names),
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()
    mine_cpu, mine_rate = statistics.median(cpu["this"]), statistics.median(rate["this"])
    print(f"\n1-record batches, server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU}, medians:")
    print("| checkout | server CPU per request | x this | requests/s | x this |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        name_cpu, name_rate = statistics.median(cpu[name]), statistics.median(rate[name])
        print(
            f"| {name} | {name_cpu:.1f} µs | {name_cpu / mine_cpu:.2f}x | "
            f"{name_rate:,.0f} | {name_rate / mine_rate:.2f}x |"
        )


if __name__ == "__main__":
    main()
