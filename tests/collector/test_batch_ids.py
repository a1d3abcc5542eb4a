"""How batch ids are remembered: keyed digests at rest, one sender's ids side by side, and
a retry that straddles the upgrade from the earlier form (before schema version 7) still
counted once."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from headcount_collector.config import Site
from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.stores import open_store
from headcount_collector.stores.base import (
    BATCH_ID_SECRET_NAME,
    LEGACY_IDS_SQL,
    CounterQuery,
    Store,
    legacy_batch_id,
    stored_batch_id,
)
from headcount_collector.stores.sqlite import SQLiteStore
from headcount_collector.tables import TABLES
from tests.collector.test_query import NOW, pv

HOUR = int(NOW) // 3600 * 3600
SECRET = bytes(range(32))


def batch(batch_id: str, n: int = 1, site: str = "shop") -> PendingBatch:
    counts: dict[CounterKey, int] = {("pageview", HOUR, pv("/")): n}
    return PendingBatch(site, batch_id, counts, 1)


def pageviews(store: Store, site: str = "shop") -> int:
    rows = store.query(
        CounterQuery(table=TABLES["pageview"], site=site, start=0, end=2**40, interval="total")
    )
    return sum(int(row[-1] or 0) for row in rows)


def execute_on(store_url: str) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Plain SQL on the store's database, as an operator (or an attacker at rest) sees it."""

    def execute(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if store_url.startswith("sqlite:"):
            import sqlite3

            with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as conn:
                rows = conn.execute(sql, params).fetchall()
                conn.commit()
                return rows
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []

    return execute


def test_the_stored_form_hides_the_id_and_keeps_one_sender_s_ids_together() -> None:
    sender, count = "a1b2c3", 0x00FFFFF0
    ids = [f"{sender}{count + k:08x}{secrets.token_hex(9)}" for k in range(32)]
    stored = [stored_batch_id("shop", i, SECRET) for i in ids]
    assert len(set(stored)) == 32
    assert all(len(s) == 52 for s in stored)
    for batch_id, form in zip(ids, stored, strict=True):
        # No run of the id's digits (its sender, its count, its tail) is left at rest.
        for start in range(0, 32 - 8):
            assert batch_id[start : start + 8] not in form
    # One sender: one 12-digit prefix, and 32 consecutive counts under at most two
    # 20-digit prefixes (runs of 32 counts; these cross from one run into the next).
    assert len({s[:12] for s in stored}) == 1
    assert len({s[:20] for s in stored}) == 2
    # Another site, another secret or another sender: elsewhere in the index.
    assert stored_batch_id("blog", ids[0], SECRET)[:12] != stored[0][:12]
    assert stored_batch_id("shop", ids[0], bytes(32))[:12] != stored[0][:12]
    assert stored_batch_id("shop", "d4e5f6" + ids[0][6:], SECRET)[:12] != stored[0][:12]
    # Any 32 hex digits are an id: an older sender's random ones too.
    assert len(stored_batch_id("shop", secrets.token_hex(16), SECRET)) == 52


def test_a_sender_cannot_leave_readable_counts_at_rest() -> None:
    """A sender that picks its counts to spell something (an address, say) leaves
    nothing of them readable: not the counts, not their XOR between two rows."""
    spelled = 0xC0A8072A  # 192.168.7.42
    first = stored_batch_id("shop", f"a1b2c3{0:08x}{'0' * 18}", SECRET)
    second = stored_batch_id("shop", f"a1b2c3{spelled:08x}{'0' * 18}", SECRET)
    difference = int(first[12:20], 16) ^ int(second[12:20], 16)
    assert difference not in (spelled, spelled >> 5, spelled & 0xFFFFFFE0)
    assert f"{spelled:08x}" not in first + second
    # Ids that differ only in their random tail differ in a full 128-bit digest.
    tails = {stored_batch_id("shop", f"{'0' * 31}{k:x}", SECRET)[20:] for k in range(16)}
    assert len(tails) == 16
    assert all(len(tail) == 32 for tail in tails)


def test_ids_are_remembered_under_the_database_s_own_secret(store: Store, store_url: str) -> None:
    batch_id = secrets.token_hex(16)
    assert store.commit([batch(batch_id)], HOUR) == [True]
    execute = execute_on(store_url)
    ((secret,),) = execute("SELECT value FROM hc_meta WHERE key = ?", (BATCH_ID_SECRET_NAME,))
    assert execute("SELECT batch_id FROM hc_batch", ()) == [
        (stored_batch_id("shop", batch_id, bytes.fromhex(secret)),)
    ]
    # Another process of the same database derives the same form: a retry is a retry.
    again = open_store(store_url)
    again.migrate()
    try:
        assert again.commit([batch(batch_id, 5)], HOUR) == [False]
        assert pageviews(again) == 1
    finally:
        again.close()


def test_a_retry_of_a_batch_remembered_before_the_upgrade_counts_once(
    store: Store, store_url: str
) -> None:
    """A batch an older collector (before schema version 7) stored (and remembered in its own form) is sent
    again after the upgrade: it is a duplicate, and other batches still count."""
    execute = execute_on(store_url)
    old_id, new_id = secrets.token_hex(16), secrets.token_hex(16)
    store.commit([batch(secrets.token_hex(16), 2)], HOUR)  # counts from before the upgrade
    execute(
        "INSERT INTO hc_batch (site, batch_id, received) VALUES (?, ?, ?)",
        ("shop", legacy_batch_id("shop", old_id), HOUR),
    )
    upgraded = open_store(store_url)
    upgraded.migrate()
    try:
        assert upgraded.commit([batch(old_id, 7), batch(new_id, 3)], HOUR) == [False, True]
        assert upgraded.commit([batch(old_id, 7)], HOUR) == [False]
        assert pageviews(upgraded) == 2 + 3
        # The same digest of another site is not that site's batch.
        assert upgraded.commit([batch(old_id, 4, site="blog")], HOUR) == [True]
    finally:
        upgraded.close()


def test_a_collector_running_on_recognises_old_ids_stored_after_it_started(
    store: Store, store_url: str
) -> None:
    """During an upgrade an older collector may still be running and remembering ids in its
    form after this one started: every commit looks, not just the first."""
    assert store.commit([batch(secrets.token_hex(16), 2)], HOUR) == [True]
    old_id = secrets.token_hex(16)
    execute_on(store_url)(
        "INSERT INTO hc_batch (site, batch_id, received) VALUES (?, ?, ?)",
        ("shop", legacy_batch_id("shop", old_id), HOUR),
    )
    assert store.commit([batch(old_id, 7)], HOUR) == [False]
    assert pageviews(store) == 2


def test_old_ids_expire_with_the_dedupe_window(store: Store, store_url: str) -> None:
    old_id = secrets.token_hex(16)
    execute_on(store_url)(
        "INSERT INTO hc_batch (site, batch_id, received) VALUES (?, ?, ?)",
        ("shop", legacy_batch_id("shop", old_id), HOUR - 3 * 86400),
    )
    site = Site("shop", ZoneInfo("UTC"), b"", b"")
    assert store.apply_retention(site, HOUR, dedupe_seconds=86400).batch_ids_forgotten == 1
    assert store.commit([batch(old_id, 2)], HOUR) == [True]


def test_without_old_ids_a_commit_makes_no_lookup_for_them(tmp_path: Path) -> None:
    """The look for the old form is one probe of an empty index, not a read per batch."""
    store = SQLiteStore(tmp_path / "store.sqlite3")
    store.migrate()
    statements: list[str] = []
    try:
        # The writer's own connection, traced by SQLite itself.
        store._connection().set_trace_callback(statements.append)
        store.commit([batch(secrets.token_hex(16)) for _ in range(4)], HOUR)
        lookups = [s for s in statements if s.startswith("SELECT site, batch_id FROM hc_batch")]
        probes = [s for s in statements if "length(batch_id)" in s]
        assert (len(lookups), len(probes)) == (0, 1)
        execute_on(f"sqlite:///{store.path}")(
            "INSERT INTO hc_batch (site, batch_id, received) VALUES (?, ?, ?)",
            ("shop", legacy_batch_id("shop", "0" * 32), HOUR),
        )
        statements.clear()
        store.commit([batch(secrets.token_hex(16)) for _ in range(4)], HOUR)
        assert len([s for s in statements if s.startswith("SELECT site, batch_id")]) == 1
    finally:
        store.close()


def test_the_probe_for_old_ids_reads_their_index_not_the_table(
    store: Store, store_url: str
) -> None:
    """Every commit asks whether old-form ids are left: the database must answer from
    migration 7's partial index, or each commit would scan every remembered id."""
    execute = execute_on(store_url)
    execute(
        "INSERT INTO hc_batch (site, batch_id, received) VALUES (?, ?, ?)",
        ("shop", legacy_batch_id("shop", "0" * 32), HOUR),
    )
    for n in range(200):
        store.commit([batch(f"a1b2c3{n:08x}{'0' * 18}")], HOUR)
    explain = "EXPLAIN QUERY PLAN " if store_url.startswith("sqlite:") else "EXPLAIN "
    plan = " ".join(str(row) for row in execute(explain + LEGACY_IDS_SQL, ()))
    assert "hc_batch_legacy" in plan


def test_a_group_mixing_retries_and_new_batches_counts_each_new_batch_once(store: Store) -> None:
    """Most group commits hold only new ids; one that also holds retries (of an earlier
    group, and twice over within itself) applies each new batch once, in either store."""
    remembered, fresh, repeated = (secrets.token_hex(16) for _ in range(3))
    assert store.commit([batch(remembered, 1)], HOUR) == [True]
    group = [batch(fresh, 10), batch(remembered, 100), batch(repeated, 1000), batch(repeated, 1000)]
    assert store.commit(group, HOUR) == [True, False, True, False]
    assert pageviews(store) == 1 + 10 + 1000
    # A group of nothing but new ids, after one that held retries.
    assert store.commit([batch(secrets.token_hex(16), 5) for _ in range(3)], HOUR) == [True] * 3
    assert store.commit([batch(fresh, 10), batch(repeated, 1000)], HOUR) == [False, False]
    assert pageviews(store) == 1 + 10 + 1000 + 15
