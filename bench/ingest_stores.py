"""Ingest throughput of real collectors: SQLite against PostgreSQL, one and three collectors.

Run: .venv/bin/python bench/ingest_stores.py [--seconds N] [--connections N]
     (PostgreSQL server: $HEADCOUNT_BENCH_POSTGRES, default
     postgresql://postgres@127.0.0.1:5432/test; a scratch database is created and dropped)

Each configuration starts fresh collector processes (``headcount-collector serve``, one
uvicorn worker each) on a fresh database, then a load generator in separate processes
posts batches over keep-alive HTTP/1.1 connections for a fixed time, spreading the
connections over the collectors. Every batch has a new batch id, so each one is really
stored (no duplicate short-cut). Batches of 1 record and of 500 distinct records.

The load generator is a minimal asyncio HTTP client (not httpx) so that on a small machine
the collectors, not the client, are what is measured; it still shares the CPU with them.
Figures: requests/s and records/s answered 202; ratio against SQLite with one collector
at the same batch size, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import psycopg

from _load import Server, start_collector
from _provenance import print_provenance
from headcount_collector.config import token_digest

SERVER = os.environ.get("HEADCOUNT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
LOAD_PROCESSES = 2
WRITE_TOKEN = "hcw_bench-write-token-0001"
SITE_FILE = f"""
[[sites]]
id = "bench"
write_token_sha256 = "{token_digest(WRITE_TOKEN).hex()}"
read_token_sha256 = "{token_digest("hcr_bench-read-token-0001").hex()}"
"""


@dataclass(frozen=True)
class Config:
    store: str
    records: int
    collectors: int

    @property
    def label(self) -> str:
        plural = "s" if self.collectors > 1 else ""
        return f"{self.store:8} {self.records:4} rec/batch {self.collectors} collector{plural}"


def body_parts(records: int) -> tuple[bytes, bytes]:
    """The JSON body split around the batch id, so each request gets a fresh id cheaply."""
    hour = int(time.time()) // 3600 * 3600
    payload = {
        "batch_id": "@ID@",
        "sender": "bench",
        "sender_version": "1.0",
        "records": [
            {
                "kind": "pageview",
                "hour": hour,
                "route": f"/bench/{i}",
                "referrer": "(direct)",
                "entry": True,
                "n": 1,
            }
            for i in range(records)
        ],
    }
    prefix, suffix = msgspec.json.encode(payload).split(b"@ID@")
    return prefix, suffix


async def connection_loop(
    port: int, prefix: bytes, suffix: bytes, deadline: float, tally: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /v1/ingest HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {WRITE_TOKEN}\r\nContent-Type: application/json\r\n"
        "Content-Length: "
    ).encode()
    # Each connection sends as one SDK process would name its batches (wire.Batch): its
    # own 6 digits, its count of batches, 18 random digits.
    sender, count = secrets.token_hex(3), secrets.randbits(32)
    try:
        while time.monotonic() < deadline:
            count = (count + 1) & 0xFFFFFFFF
            batch_id = f"{sender}{count:08x}{secrets.token_hex(9)}"
            body = prefix + batch_id.encode() + suffix
            writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            tally[0 if status == 202 else 1] += 1
    finally:
        writer.close()


def load_process(
    ports: list[int],
    connections: int,
    records: int,
    seconds: float,
    out: multiprocessing.Queue[tuple[int, int]],
) -> None:
    prefix, suffix = body_parts(records)

    async def run() -> tuple[int, int]:
        tally = [0, 0]
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(
                connection_loop(ports[i % len(ports)], prefix, suffix, deadline, tally)
                for i in range(connections)
            )
        )
        return tally[0], tally[1]

    out.put(asyncio.run(run()))


def generate_load(
    ports: list[int], connections: int, records: int, seconds: float
) -> tuple[int, int]:
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[tuple[int, int]] = context.Queue()
    per_process = max(1, connections // LOAD_PROCESSES)
    workers = [
        context.Process(target=load_process, args=(ports, per_process, records, seconds, out))
        for _ in range(LOAD_PROCESSES)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(ok for ok, _ in results), sum(bad for _, bad in results)


def fresh_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def measure(
    config: Config, workdir: Path, pg_url: str, seconds: float, connections: int
) -> tuple[float, float, int]:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    site_file = run_dir / "sites.toml"
    site_file.write_text(SITE_FILE, encoding="utf-8")
    if config.store == "postgres":
        fresh_postgres(pg_url)
        db_url = pg_url
    else:
        db_url = f"sqlite:///{run_dir / 'bench.sqlite3'}"
    servers: list[Server] = []
    try:
        for i in range(config.collectors):
            servers.append(start_collector(f"collector-{i}", run_dir, site_file, db_url))
        ports = [server.port for server in servers]
        generate_load(ports, connections, config.records, 1.0)  # warm-up, not counted
        ok, bad = generate_load(ports, connections, config.records, seconds)
    finally:
        for server in servers:
            server.stop()
    return ok / seconds, ok * config.records / seconds, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print_provenance()
    configs = [
        Config(store, records, collectors)
        for records in (1, 500)
        for store in ("sqlite", "postgres")
        for collectors in (1, 3)
    ]
    name = f"headcount_bench_{os.getpid()}"
    pg_url = f"{SERVER.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    print(
        f"{args.seconds:.0f} s per configuration, {args.connections} keep-alive connections "
        f"from {LOAD_PROCESSES} load processes, {os.cpu_count()} CPUs"
    )
    print(f"{'configuration':36} {'req/s':>8} {'records/s':>10} {'non-202':>8} {'vs sqlite-1':>12}")
    try:
        with tempfile.TemporaryDirectory() as workdir:
            baseline: dict[int, float] = {}
            for config in configs:
                rps, records_ps, bad = measure(
                    config, Path(workdir), pg_url, args.seconds, args.connections
                )
                if config.store == "sqlite" and config.collectors == 1:
                    baseline[config.records] = rps
                ratio = rps / baseline[config.records]
                print(f"{config.label:36} {rps:8.0f} {records_ps:10.0f} {bad:8} {ratio:11.2f}x")
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
