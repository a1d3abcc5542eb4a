"""The schema, one frozen version at a time, and the runner both backends share.

Each version is literal SQL, written once and never edited: a database made by version 1
and upgraded step by step must end where a new database does. A change to the record
kinds in ``wire.KINDS`` needs a new version here; a test holds the latest schema equal to
what the registry declares, and another upgrades a version-1 database kept under tests/.

The SQL is the same for SQLite and PostgreSQL but for a few types and table options,
which each statement names as ``{bigint}``, ``{real}`` and ``{table}``; where a version
differs in substance (rebuilding a table SQLite cannot alter), it has one list per backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "SchemaDialect",
    "apply_migrations",
    "latest_version",
    "log_migration",
    "migrations",
]

logger = logging.getLogger("headcount_collector.migrations")


@dataclass(frozen=True, slots=True)
class SchemaDialect:
    backend: Literal["sqlite", "postgresql"]
    bigint: str  # a 64-bit integer column
    real: str  # a double-precision column
    table: str  # written after every CREATE TABLE's closing parenthesis
    placeholder: str


SQLITE: Final = SchemaDialect("sqlite", "INTEGER", "REAL", " WITHOUT ROWID", "?")
POSTGRESQL: Final = SchemaDialect("postgresql", "BIGINT", "DOUBLE PRECISION", "", "%s")

# Version 1: a counter table per record kind, and the batch ids that make retries
# idempotent. Bots had no category yet.
_V1: Final = (
    """CREATE TABLE IF NOT EXISTS hc_pageview (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    route TEXT NOT NULL,
    referrer TEXT NOT NULL,
    utm_source TEXT NOT NULL,
    utm_medium TEXT NOT NULL,
    utm_campaign TEXT NOT NULL,
    entry INTEGER NOT NULL,
    n {bigint} NOT NULL,
    PRIMARY KEY (site, res, bucket, route, referrer, utm_source, utm_medium, utm_campaign, entry)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_request (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    route TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL,
    latency TEXT NOT NULL,
    n {bigint} NOT NULL,
    PRIMARY KEY (site, res, bucket, route, method, status, latency)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_event (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    name TEXT NOT NULL,
    route TEXT NOT NULL,
    props TEXT NOT NULL,
    n {bigint} NOT NULL,
    PRIMARY KEY (site, res, bucket, name, route, props)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_bot (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    n {bigint} NOT NULL,
    PRIMARY KEY (site, res, bucket)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_visit (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    route TEXT NOT NULL,
    duration TEXT NOT NULL,
    pages TEXT NOT NULL,
    n {bigint} NOT NULL,
    PRIMARY KEY (site, res, bucket, route, duration, pages)
){table}""",
    "CREATE TABLE IF NOT EXISTS hc_batch ("
    " site TEXT NOT NULL, batch_id TEXT NOT NULL, received {bigint} NOT NULL,"
    " PRIMARY KEY (site, batch_id)){table}",
)
_V1_BATCH_INDEX: Final = {
    "sqlite": "CREATE INDEX IF NOT EXISTS hc_batch_received ON hc_batch (received)",
    # Leads with site like everything else, so it stays local to a shard on Citus.
    "postgresql": "CREATE INDEX IF NOT EXISTS hc_batch_received ON hc_batch (site, received)",
}

# Version 2: the visits mode each site's senders declared.
_V2: Final = (
    "CREATE TABLE IF NOT EXISTS hc_sender ("
    " site TEXT NOT NULL, visits TEXT NOT NULL, seen {bigint} NOT NULL,"
    " PRIMARY KEY (site, visits)){table}",
)

# Version 3: bots by category; the rows counted before it become 'other'.
_V3: Final = {
    # A WITHOUT ROWID table cannot change its primary key in place: build, copy, swap.
    "sqlite": (
        "CREATE TABLE hc_bot_v3 ("
        " site TEXT NOT NULL, res TEXT NOT NULL, bucket INTEGER NOT NULL,"
        " category TEXT NOT NULL, n INTEGER NOT NULL,"
        " PRIMARY KEY (site, res, bucket, category)) WITHOUT ROWID",
        "INSERT INTO hc_bot_v3 (site, res, bucket, category, n)"
        " SELECT site, res, bucket, 'other', n FROM hc_bot",
        "DROP TABLE hc_bot",
        "ALTER TABLE hc_bot_v3 RENAME TO hc_bot",
    ),
    "postgresql": (
        "ALTER TABLE hc_bot ADD COLUMN IF NOT EXISTS category TEXT NOT NULL DEFAULT 'other'",
        "ALTER TABLE hc_bot ALTER COLUMN category DROP DEFAULT",
        "ALTER TABLE hc_bot DROP CONSTRAINT hc_bot_pkey",
        "ALTER TABLE hc_bot ADD PRIMARY KEY (site, res, bucket, category)",
    ),
}

# Version 4: the release model. Released (sealed, noisy) cells, one table per record
# kind, and the seal watermarks. A released cell's dimension columns outside its marginal
# hold '' (or 0), which the marginal code in the key keeps apart from real values; the
# marginal leads the bucket so that a query's range scan reads only its cells.
_V4: Final = (
    """CREATE TABLE IF NOT EXISTS hc_rel_pageview (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    marginal TEXT NOT NULL,
    route TEXT NOT NULL,
    referrer TEXT NOT NULL,
    utm_source TEXT NOT NULL,
    utm_medium TEXT NOT NULL,
    utm_campaign TEXT NOT NULL,
    entry INTEGER NOT NULL,
    n {bigint} NOT NULL,
    var {real} NOT NULL,
    PRIMARY KEY (site, res, marginal, bucket, route, referrer, utm_source, utm_medium,
        utm_campaign, entry)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_rel_request (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    marginal TEXT NOT NULL,
    route TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL,
    latency TEXT NOT NULL,
    n {bigint} NOT NULL,
    var {real} NOT NULL,
    PRIMARY KEY (site, res, marginal, bucket, route, method, status, latency)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_rel_event (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    marginal TEXT NOT NULL,
    name TEXT NOT NULL,
    route TEXT NOT NULL,
    props TEXT NOT NULL,
    n {bigint} NOT NULL,
    var {real} NOT NULL,
    PRIMARY KEY (site, res, marginal, bucket, name, route, props)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_rel_bot (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    marginal TEXT NOT NULL,
    category TEXT NOT NULL,
    n {bigint} NOT NULL,
    var {real} NOT NULL,
    PRIMARY KEY (site, res, marginal, bucket, category)
){table}""",
    """CREATE TABLE IF NOT EXISTS hc_rel_visit (
    site TEXT NOT NULL,
    res TEXT NOT NULL,
    bucket {bigint} NOT NULL,
    marginal TEXT NOT NULL,
    route TEXT NOT NULL,
    duration TEXT NOT NULL,
    pages TEXT NOT NULL,
    n {bigint} NOT NULL,
    var {real} NOT NULL,
    PRIMARY KEY (site, res, marginal, bucket, route, duration, pages)
){table}""",
    "CREATE TABLE IF NOT EXISTS hc_seal ("
    " site TEXT NOT NULL, res TEXT NOT NULL, sealed_until {bigint} NOT NULL,"
    " PRIMARY KEY (site, res)){table}",
    # Nothing at rest finer than an hour: batch arrival times are kept to the hour.
    "UPDATE hc_batch SET received = received - received % 3600",
)

# Version 5: the buckets released with counts, so that a bucket sealed while it held
# nothing (it released nothing about anyone) can take an import once, and no other can.
# Buckets sealed before this version are taken to have held counts if anything is stored
# for them now, late records included: that refuses more imports, never fewer.
_V5: Final = (
    "CREATE TABLE IF NOT EXISTS hc_sealed_data ("
    " site TEXT NOT NULL, res TEXT NOT NULL, bucket {bigint} NOT NULL,"
    " PRIMARY KEY (site, res, bucket)){table}",
    """INSERT INTO hc_sealed_data (site, res, bucket)
SELECT c.site, c.res, c.bucket FROM (
    SELECT site, res, bucket FROM hc_pageview
    UNION SELECT site, res, bucket FROM hc_rel_pageview
    UNION SELECT site, res, bucket FROM hc_request
    UNION SELECT site, res, bucket FROM hc_rel_request
    UNION SELECT site, res, bucket FROM hc_event
    UNION SELECT site, res, bucket FROM hc_rel_event
    UNION SELECT site, res, bucket FROM hc_bot
    UNION SELECT site, res, bucket FROM hc_rel_bot
    UNION SELECT site, res, bucket FROM hc_visit
    UNION SELECT site, res, bucket FROM hc_rel_visit
) c
JOIN hc_seal s ON s.site = c.site AND s.res = c.res
WHERE c.bucket < s.sealed_until""",
)


# Version 6: history imports into noised sites, and import batch ids kept with their data.
# hc_seal.origin is where sealing began for a site; the hours before it were never
# released, so each can take one import (claimed in hc_sealed_data, decided by the range
# asked for, never by the counts). Sites sealing before this version keep origin NULL:
# when they began is unknown, so none of their past takes an import.
# hc_batch.keep_until: an import's batch id is remembered until its hours leave hourly
# retention, since ingest takes an import's hours that far back (a live batch id is
# remembered for the dedupe window from its arrival, which covers every hour it can hold).
_V6: Final = (
    "ALTER TABLE hc_seal ADD COLUMN origin {bigint}",
    "ALTER TABLE hc_batch ADD COLUMN keep_until {bigint}",
)


def _format(statements: Sequence[str], dialect: SchemaDialect) -> list[str]:
    return [
        s.format(bigint=dialect.bigint, real=dialect.real, table=dialect.table) for s in statements
    ]


# Version 7: batch ids in the form that keeps one sender's ids side by side (52 hex
# digits; see stores.base.stored_batch_id). Ids stored before it have 32; a commit looks
# for a retry in that form while any are left, which this partial index (empty once they
# expire, and never written for the new form) answers at once. Collectors older than
# this version refuse the database from here on: they would not recognise the new form.
_V7: Final = (
    "CREATE INDEX IF NOT EXISTS hc_batch_legacy ON hc_batch (site, batch_id) "
    "WHERE length(batch_id) = 32",
)


# Version 8: hc_sender.seen held the second a site's latest batch arrived, finer than the
# hour that everything else at rest is kept to; commits now write the hour, and this
# rounds what earlier versions wrote down to it.
_V8: Final = ("UPDATE hc_sender SET seen = seen - seen % 3600",)


# Version 9: the parameters cells were sealed under. A site's epsilon and delta may change;
# cells sealed before keep the noise they were drawn with, so an answer states the
# weakest parameters among the time it covers (stores.base.SealParams), not only today's.
# One row per site, resolution and (epsilon, delta), with the span of time sealed under
# them: the watermark steps and history ranges sealed, never which buckets held counts
# (that would date a single visit). Everything sealed before this version is marked as
# sealed under parameters not recorded (epsilon and delta -1).
_V9: Final = (
    "CREATE TABLE IF NOT EXISTS hc_seal_params ("
    " site TEXT NOT NULL, res TEXT NOT NULL, epsilon {real} NOT NULL, delta {real} NOT NULL,"
    " sealed_from {bigint} NOT NULL, sealed_until {bigint} NOT NULL,"
    " PRIMARY KEY (site, res, epsilon, delta)){table}",
    "INSERT INTO hc_seal_params (site, res, epsilon, delta, sealed_from, sealed_until)"
    " SELECT site, res, -1, -1, 0, sealed_until FROM hc_seal",
)


# Version 10: daily rows are rolled up from the hourly rows once a local day has ended,
# rather than written beside every hourly row at ingest (which doubled the rows a commit
# of new keys writes). hc_rollup.rolled_until is a site's watermark: every day before it
# holds all of its hours' counts, every day from it on holds none (stores.base.roll_days).
# A site with no row yet has had daily rows written at ingest for every day, as before.
_V10: Final = (
    "CREATE TABLE IF NOT EXISTS hc_rollup ("
    " site TEXT NOT NULL, rolled_until {bigint} NOT NULL, PRIMARY KEY (site)){table}",
)

# Version 11: the buckets that hold released cells, so a read of one route's cells over a
# long period can find each bucket's cells by key (stores.base.Dialect.released_sql). It
# lists what was released and nothing else: hc_sealed_data lists every bucket that held
# counts, released or not, and a read that probed those took longer for an hour someone
# visited. Filled from the released cells already stored.
_V11: Final = (
    "CREATE TABLE IF NOT EXISTS hc_rel_buckets ("
    " site TEXT NOT NULL, res TEXT NOT NULL, bucket {bigint} NOT NULL,"
    " PRIMARY KEY (site, res, bucket)){table}",
    # WHERE true: SQLite reads ON CONFLICT after a bare SELECT as part of a join.
    """INSERT INTO hc_rel_buckets (site, res, bucket)
SELECT site, res, bucket FROM (
    SELECT site, res, bucket FROM hc_rel_pageview
    UNION SELECT site, res, bucket FROM hc_rel_request
    UNION SELECT site, res, bucket FROM hc_rel_event
    UNION SELECT site, res, bucket FROM hc_rel_bot
    UNION SELECT site, res, bucket FROM hc_rel_visit
) released WHERE true ON CONFLICT DO NOTHING""",
)

_VERSIONS: Final[tuple[Callable[[SchemaDialect], list[str]], ...]] = (
    lambda d: [*_format(_V1, d), _V1_BATCH_INDEX[d.backend]],
    lambda d: _format(_V2, d),
    lambda d: list(_V3[d.backend]),
    lambda d: _format(_V4, d),
    lambda d: _format(_V5, d),
    lambda d: _format(_V6, d),
    lambda d: list(_V7),
    lambda d: list(_V8),
    lambda d: _format(_V9, d),
    lambda d: _format(_V10, d),
    lambda d: _format(_V11, d),
)


def migrations(dialect: SchemaDialect) -> list[list[str]]:
    """Every version's statements for ``dialect``, version 1 first."""
    return [version(dialect) for version in _VERSIONS]


def latest_version() -> int:
    return len(_VERSIONS)


def apply_migrations(execute: Callable[..., Any], dialect: SchemaDialect) -> int:
    """Bring the schema up to the latest version, inside the caller's transaction; the
    version found (0: a new database), for ``log_migration`` once committed.

    ``execute`` is the connection's own; the caller holds whatever lock keeps two
    collectors from migrating at once (SQLite's write lock, a PostgreSQL advisory lock).
    """
    latest = latest_version()
    execute("CREATE TABLE IF NOT EXISTS hc_meta (key TEXT PRIMARY KEY, value TEXT)")
    row = execute("SELECT value FROM hc_meta WHERE key = 'schema_version'").fetchone()
    current = int(str(row[0])) if row else 0
    if current > latest:
        raise RuntimeError(
            f"database schema version {current} is newer than this collector "
            f"({latest}); upgrade headcount"
        )
    for version, statements in enumerate(migrations(dialect), start=1):
        if version <= current:
            continue
        for statement in statements:
            execute(statement)
        execute(
            "INSERT INTO hc_meta (key, value) VALUES ('schema_version', "
            f"{dialect.placeholder}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(version),),
        )
    return current


def log_migration(found: int) -> None:
    """After the migration's commit: what it did, said once, by the process that did
    it (an operator checks this line after a deploy)."""
    latest = latest_version()
    if found == 0:
        logger.info("database schema created (version %d)", latest)
    elif found < latest:
        logger.info("database schema migrated from version %d to %d", found, latest)
