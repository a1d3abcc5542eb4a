"""What PostgreSQL adds over SQLite: several collectors on one database, and outages.

The semantics both stores share (ingest, query, retention) are covered by the
store-parametrized tests; these tests cover the multi-writer and failure behaviour.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from headcount_collector.app import create_app
from headcount_collector.config import Settings, Site, load_sites
from headcount_collector.errors import StoreUnavailable
from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.stores.base import CounterQuery, release_table
from headcount_collector.stores.postgres import SCHEMA_VERSION, PoolSettings, PostgresStore
from headcount_collector.tables import TABLES
from tests._servers import free_port
from tests.collector.conftest import _wipe_postgres, auth, batch_body, pageview, read_auth
from tests.collector.test_query import NOW, pv
from tests.conftest import POSTGRES_URL, site_file_text

pytestmark = pytest.mark.postgres

HOUR = int(NOW) // 3600 * 3600


@pytest.fixture
def pg_url(postgres_database: str) -> Iterator[str]:
    _wipe_postgres(postgres_database)
    yield postgres_database
    _wipe_postgres(postgres_database)


@pytest.fixture
def open_stores(pg_url: str) -> Iterator[Callable[[], PostgresStore]]:
    """Independent stores on one database: each stands for one collector process."""
    opened: list[PostgresStore] = []

    def open_one() -> PostgresStore:
        store = PostgresStore(pg_url)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def blog(tmp_path: Path) -> Site:
    path = tmp_path / "sites.toml"
    path.write_text(site_file_text(), encoding="utf-8")
    site = load_sites(path).get("blog")
    assert site is not None
    return site


def batch(
    counts: dict[CounterKey, int], batch_id: str | None = None, site: str = "blog"
) -> PendingBatch:
    return PendingBatch(site, batch_id or secrets.token_hex(16), counts, len(counts))


def remembered_batch_ids(pg_url: str) -> int:
    """How many batch ids the database holds for duplicate detection."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM hc_batch").fetchone()
    assert row is not None
    return int(row[0])


def total(store: PostgresStore, site: str = "blog", kind: str = "pageview") -> int:
    rows = store.query(
        # Daily rows hold every count, including those whose hourly rows have expired.
        CounterQuery(
            table=TABLES[kind], site=site, start=0, end=2**40, interval="total", resolution="d"
        )
    )
    return sum(int(row[-1] or 0) for row in rows)


def test_collectors_starting_together_migrate_once(
    open_stores: Callable[[], PostgresStore], pg_url: str
) -> None:
    stores = [open_stores() for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def start(store: PostgresStore) -> int:
        barrier.wait()
        store.migrate()
        return store.schema_version()

    with ThreadPoolExecutor(len(stores)) as pool:
        versions = list(pool.map(start, stores))
    assert versions == [SCHEMA_VERSION] * len(stores)
    with psycopg.connect(pg_url) as conn:
        meta = conn.execute(
            "SELECT key, value FROM hc_meta WHERE key = 'schema_version'"
        ).fetchall()
        secrets_made = conn.execute(
            "SELECT COUNT(*) FROM hc_meta WHERE key = 'key_cap_secret'"
        ).fetchone()
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'hc\\_%'"
        ).fetchall()
    assert meta == [("schema_version", str(SCHEMA_VERSION))]
    assert secrets_made == (1,)  # one secret, however many collectors started at once
    assert {t for (t,) in tables} == {
        *(t.name for t in TABLES.values()),
        *(release_table(kind) for kind in TABLES),
        "hc_seal",
        "hc_sealed_data",
        "hc_rel_buckets",
        "hc_seal_params",
        "hc_batch",
        "hc_rollup",
        "hc_meta",
        "hc_sender",
    }


def test_counter_columns_are_bigint_and_lead_with_site(
    open_stores: Callable[[], PostgresStore], pg_url: str
) -> None:
    open_stores().migrate()
    with psycopg.connect(pg_url) as conn:
        for table in TABLES.values():
            types: dict[str, str] = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_name = %s",
                    (table.name,),
                ).fetchall()
            )
            assert types["bucket"] == types["n"] == "bigint"
            key = conn.execute(
                "SELECT a.attname FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
                " WHERE i.indrelid = %s::regclass AND i.indisprimary",
                (table.name,),
            ).fetchone()
            assert key == ("site",)


def test_newer_schema_is_refused(open_stores: Callable[[], PostgresStore], pg_url: str) -> None:
    open_stores().migrate()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE hc_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="newer than this collector"):
        open_stores().migrate()


def test_retry_landing_on_another_collector_counts_once(
    open_stores: Callable[[], PostgresStore], pg_url: str
) -> None:
    first, second = open_stores(), open_stores()
    first.migrate()
    second.migrate()
    counts: dict[CounterKey, int] = {("pageview", HOUR, pv("/")): 3}
    retried = batch(counts)
    assert first.commit([retried], HOUR) == [True]
    fresh = batch({("pageview", HOUR, pv("/")): 4})
    assert second.commit([retried, fresh], HOUR) == [False, True]
    assert total(first) == total(second) == 7
    assert remembered_batch_ids(pg_url) == 2


def test_same_batch_twice_in_one_group_counts_once(
    open_stores: Callable[[], PostgresStore],
) -> None:
    store = open_stores()
    store.migrate()
    counts: dict[CounterKey, int] = {("pageview", HOUR, pv("/")): 5}
    batch_id = secrets.token_hex(16)
    applied = store.commit([batch(counts, batch_id), batch(counts, batch_id)], HOUR)
    assert applied == [True, False]
    assert total(store) == 5


def test_batch_ids_are_scoped_by_site(open_stores: Callable[[], PostgresStore]) -> None:
    store = open_stores()
    store.migrate()
    batch_id = secrets.token_hex(16)
    applied = store.commit(
        [
            batch({("pageview", HOUR, pv("/")): 1}, batch_id, site="blog"),
            batch({("pageview", HOUR, pv("/")): 2}, batch_id, site="shop"),
        ],
        HOUR,
    )
    assert applied == [True, True]
    assert (total(store, "blog"), total(store, "shop")) == (1, 2)


def test_counts_beyond_32_bits(open_stores: Callable[[], PostgresStore]) -> None:
    store = open_stores()
    store.migrate()
    big = 3_000_000_000
    for _ in range(2):
        store.commit([batch({("pageview", HOUR, pv("/")): big})], HOUR)
    assert total(store) == 2 * big


def test_event_props_and_empty_values_round_trip(
    open_stores: Callable[[], PostgresStore],
) -> None:
    store = open_stores()
    store.migrate()
    store.commit(
        [
            batch(
                {
                    ("event", HOUR, ("signup", "/join", '{"plan":"pro"}')): 2,
                    ("event", HOUR, ("signup", "/join", '{"plan":"free"}')): 5,
                    ("event", HOUR, ("download", "", "{}")): 1,
                }
            )
        ],
        HOUR,
    )
    rows = store.query(
        CounterQuery(
            table=TABLES["event"],
            site="blog",
            start=HOUR,
            end=HOUR + 3600,
            group_by=("name", ("prop", "plan")),
            interval="hour",
        )
    )
    assert sorted(rows, key=repr) == sorted(
        [(HOUR, "signup", "pro", 2), (HOUR, "signup", "free", 5), (HOUR, "download", None, 1)],
        key=repr,
    )


def deadlocks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_concurrent_collectors_with_overlapping_rows_total_exactly(
    open_stores: Callable[[], PostgresStore], pg_url: str
) -> None:
    stores = [open_stores() for _ in range(4)]
    stores[0].migrate()
    routes = [f"/page/{i}" for i in range(40)]
    groups_per_writer, batches_per_group = 25, 8
    barrier = threading.Barrier(len(stores))

    def write(store: PostgresStore, seed: int) -> int:
        rng = random.Random(seed)
        barrier.wait()
        written = 0
        for _ in range(groups_per_writer):
            group = []
            for _ in range(batches_per_group):
                # Every writer touches the same rows in a different order: without a
                # global lock order these transactions would deadlock.
                chosen = rng.sample(routes, 15)
                group.append(batch({("pageview", HOUR, pv(r)): 1 for r in chosen}))
                written += len(chosen)
            assert store.commit(group, HOUR) == [True] * batches_per_group
        return written

    deadlocks_before = deadlocks(pg_url)
    with ThreadPoolExecutor(len(stores)) as pool:
        written = sum(pool.map(write, stores, range(len(stores))))
    # Retries would hide deadlocks from the totals; the server's own count does not.
    assert deadlocks(pg_url) == deadlocks_before
    assert written == len(stores) * groups_per_writer * batches_per_group * 15
    assert total(stores[0]) == written
    assert remembered_batch_ids(pg_url) == len(stores) * groups_per_writer * batches_per_group


def test_retention_in_several_collectors_rolls_up_once(
    open_stores: Callable[[], PostgresStore], blog: Site
) -> None:
    stores = [open_stores() for _ in range(3)]
    stores[0].migrate()
    old = HOUR - 40 * 86400
    history: dict[CounterKey, int] = {
        ("pageview", old + h * 3600, pv(f"/r{h % 5}")): h + 1 for h in range(72)
    }
    stores[0].commit([batch(history)], HOUR)
    expected = sum(history.values())
    barrier = threading.Barrier(len(stores) + 1)
    stop = threading.Event()

    def keep_writing() -> int:
        # Live traffic for the current hour keeps arriving while old hours roll up.
        barrier.wait()
        written = 0
        while not stop.is_set():
            stores[0].commit([batch({("pageview", HOUR, pv("/live")): 1})], HOUR)
            written += 1
        return written

    def retain(store: PostgresStore) -> int:
        barrier.wait()
        return store.apply_retention(blog, int(NOW), 7 * 86400).hourly_rolled_up

    with ThreadPoolExecutor(len(stores) + 1) as pool:
        writer = pool.submit(keep_writing)
        rolled = list(pool.map(retain, stores))
        stop.set()
        live = writer.result()
    assert sum(rolled) == len(history)
    assert total(stores[1]) == expected + live
    hourly = stores[2].query(
        CounterQuery(table=TABLES["pageview"], site="blog", start=0, end=HOUR, interval="hour")
    )
    assert hourly == []


def test_unreachable_server_raises_store_unavailable_quickly() -> None:
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        PoolSettings(min_size=0, max_size=1, timeout=0.5),
    )
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.migrate()
        with pytest.raises(StoreUnavailable):
            store.commit([batch({("pageview", HOUR, pv("/")): 1})], HOUR)
        with pytest.raises(StoreUnavailable):
            store.query(CounterQuery(table=TABLES["bot"], site="blog", start=0, end=1))
        assert time.monotonic() - started < 5
    finally:
        store.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"min_size": -1},
        {"min_size": 3, "max_size": 2},
        {"min_size": 0, "max_size": 0},
        {"timeout": 0.0},
        {"reconnect_timeout": -1.0},
    ],
)
def test_pool_settings_reject_nonsense(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"size|timeout"):
        PoolSettings(**settings)  # type: ignore[arg-type]


def test_connections_killed_by_the_server_are_replaced(
    open_stores: Callable[[], PostgresStore], pg_url: str
) -> None:
    store = open_stores()
    store.migrate()
    store.commit([batch({("pageview", HOUR, pv("/")): 1})], HOUR)
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    assert killed is not None
    assert killed[0] >= 1
    assert store.commit([batch({("pageview", HOUR, pv("/")): 1})], HOUR) == [True]
    assert total(store) == 2


@pytest.fixture
def outage_database(postgres_database: str) -> Iterator[tuple[str, str]]:
    """A database of its own that the test can close to connections: (url, name)."""
    name = postgres_database.rsplit("/", 1)[1] + "_outage"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_database.rsplit('/', 1)[0]}/{name}", name
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_outage(name: str, down: bool) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not down).lower()}')
        if down:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_outage_answers_503_with_retry_after_and_recovers(
    outage_database: tuple[str, str], tmp_path: Path
) -> None:
    url, name = outage_database
    store = PostgresStore(url, PoolSettings(min_size=1, max_size=2, timeout=0.5))
    path = tmp_path / "sites.toml"
    path.write_text(site_file_text(), encoding="utf-8")
    app = create_app(Settings(config_path=str(path), db_url=url), store, load_sites(path))
    body = batch_body([pageview("/during-outage", n=4)])
    try:
        with TestClient(app) as client:
            set_outage(name, down=True)
            refused = client.post("/v1/ingest", content=body, headers=auth())
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) > 0
            stats = client.get("/v1/stats", params={"metric": "pageviews"}, headers=read_auth())
            assert stats.status_code == 503
            set_outage(name, down=False)
            # The sender retries the refused batch unchanged until it is taken; the pool
            # reconnects within a few seconds and the batch is stored exactly once.
            deadline = time.monotonic() + 15
            while (
                status := client.post("/v1/ingest", content=body, headers=auth()).status_code
            ) == 503:
                assert time.monotonic() < deadline, "still 503 long after the database came back"
                time.sleep(0.2)
            assert status == 202
            again = client.post("/v1/ingest", content=body, headers=auth())
            assert again.json() == {"duplicate": True}
    finally:
        store.close()
    check = PostgresStore(url)
    try:
        assert total(check) == 4
    finally:
        check.close()
