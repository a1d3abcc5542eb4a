"""The collector's operational figures, for Prometheus: never a visitor count.

What is measured: batches and records accepted, duplicates, refusals by reason, commit
latency and group sizes, store errors, retention runs, and keys spilled into ``(other)``
by the per-site caps. How many records a site sent is an operator's figure about load;
nothing here is labelled by site, route or any other dimension of the counts.

One ``Metrics`` object is made per app (``create_app(..., metrics=...)``) and handed to
the parts that count; there are no module-level metrics. ``NoMetrics`` is the same
interface doing nothing, used when ``/metrics`` is off (and when ``prometheus_client``
is not installed). With several worker processes the CLI points ``prometheus_client`` at
a shared directory (its multiprocess mode), so every scrape sums all workers.
"""

from __future__ import annotations

import os
from typing import Protocol

__all__ = [
    "MULTIPROCESS_ENV",
    "Metrics",
    "NoMetrics",
    "PrometheusMetrics",
    "install_hint",
    "serve_on_port",
]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

install_hint = (
    "metrics need prometheus_client: pip install 'headcount[metrics]' "
    "(from a clone: pip install -e '.[metrics]')"
)

# Refusal reasons, by HTTP status, as they appear in headcount_ingest_rejected_total.
REJECT_REASONS = {
    400: "malformed",
    401: "unauthorized",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "storage_unavailable",
}


class Metrics(Protocol):
    def batch_accepted(self, records: int) -> None: ...
    def batch_duplicate(self) -> None: ...
    def rejected(self, status: int) -> None: ...
    def committed(self, seconds: float, batches: int) -> None: ...
    def store_error(self, kind: str) -> None: ...
    def retention_run(self, ok: bool) -> None: ...
    def keys_spilled(self, table: str, keys: int) -> None:
        """New keys a per-site, per-hour cap counted into ``(other)`` (stores call it)."""
        ...

    def render(self) -> tuple[bytes, str]:
        """The exposition document and its content type."""
        ...


class NoMetrics:
    """Metrics switched off: every call is free."""

    def batch_accepted(self, records: int) -> None:
        return None

    def batch_duplicate(self) -> None:
        return None

    def rejected(self, status: int) -> None:
        return None

    def committed(self, seconds: float, batches: int) -> None:
        return None

    def store_error(self, kind: str) -> None:
        return None

    def retention_run(self, ok: bool) -> None:
        return None

    def keys_spilled(self, table: str, keys: int) -> None:
        return None

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain; charset=utf-8"


class PrometheusMetrics:
    """The figures as ``prometheus_client`` metrics in a registry of this app's own."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ModuleNotFoundError:
            raise ValueError(install_hint) from None
        self.registry = CollectorRegistry()
        registry = self.registry
        self._batches = Counter(
            "headcount_ingest_batches_accepted",
            "Batches committed (2xx, first time).",
            registry=registry,
        )
        self._records = Counter(
            "headcount_ingest_records_accepted",
            "Count records in committed batches.",
            registry=registry,
        )
        self._duplicates = Counter(
            "headcount_ingest_batches_duplicate",
            "Batches answered as already applied (a retry).",
            registry=registry,
        )
        self._rejected = Counter(
            "headcount_ingest_rejected",
            "Batches refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self._commit_seconds = Histogram(
            "headcount_commit_seconds",
            "Time to commit one group of batches.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self._group_batches = Histogram(
            "headcount_commit_group_batches",
            "Batches per group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )
        self._store_errors = Counter(
            "headcount_store_errors",
            "Failed writes, by kind.",
            ["kind"],
            registry=registry,
        )
        self._retention = Counter(
            "headcount_retention_runs",
            "Retention runs, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self._spilled = Counter(
            "headcount_keys_spilled",
            "New keys counted into (other) by the per-site, per-hour caps, by table.",
            ["table"],
            registry=registry,
        )

    def batch_accepted(self, records: int) -> None:
        self._batches.inc()
        self._records.inc(records)

    def batch_duplicate(self) -> None:
        self._duplicates.inc()

    def rejected(self, status: int) -> None:
        self._rejected.labels(REJECT_REASONS.get(status, str(status))).inc()

    def committed(self, seconds: float, batches: int) -> None:
        self._commit_seconds.observe(seconds)
        self._group_batches.observe(batches)

    def store_error(self, kind: str) -> None:
        self._store_errors.labels(kind).inc()

    def retention_run(self, ok: bool) -> None:
        self._retention.labels("ok" if ok else "failed").inc()

    def keys_spilled(self, table: str, keys: int) -> None:
        self._spilled.labels(table).inc(keys)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if os.environ.get(MULTIPROCESS_ENV):
            # Every worker's figures, summed: a scrape reaches one worker but sees all.
            from prometheus_client.multiprocess import MultiProcessCollector

            combined = CollectorRegistry()
            MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def serve_on_port(host: str, port: int) -> None:
    """Serve every worker's figures on a port of their own, from a daemon thread of the
    calling process (the CLI's, which outlives its workers)."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector
    except ModuleNotFoundError:
        raise ValueError(install_hint) from None
    combined = CollectorRegistry()
    MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=combined)
