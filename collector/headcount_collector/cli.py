"""headcount-collector: run and manage a Headcount collector.

Commands: serve, init, check-config, sites, token, digest, purge, export, backup, demo.
Run "headcount-collector COMMAND --help" for a command's options and their defaults.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from headcount_collector import __version__, serverlimits
from headcount_collector.commands import register_all
from headcount_collector.commands._common import (
    DEFAULT_CONFIG,
    HelpFormatter,
    config_path,
    new_site_problem,
)
from headcount_collector.config import (
    Settings,
    load_sites,
    starter_config,
    token_digest,
)
from headcount_collector.database import (
    DEFAULT_DB_URL,
    describe_db,
    open_checked,
    open_existing,
    resolve_db_url,
)
from headcount_collector.errors import ConfigError, StoreUnavailable

__all__ = ["build_parser", "main", "settings_from_environment"]

SETTINGS_ENV = "HEADCOUNT_COLLECTOR_SETTINGS"
METRICS_TOKEN_ENV = "HEADCOUNT_METRICS_TOKEN"  # noqa: S105 - a variable name

logger = logging.getLogger("headcount_collector")


def settings_from_environment() -> Settings:
    """The settings the CLI handed to uvicorn's worker processes."""
    return msgspec.json.decode(os.environ[SETTINGS_ENV], type=Settings)


def app_from_environment():  # type: ignore[no-untyped-def]
    """uvicorn factory for worker processes (they re-import the app by name)."""
    from headcount_collector.app import create_app

    settings = settings_from_environment()
    try:
        sites = load_sites(settings.config_path)
    except ConfigError as exc:
        # A worker starting after SIGHUP (several workers: uvicorn replaces them all)
        # finds the file broken: one line that says so, not a traceback; uvicorn then
        # keeps the workers already running, which keep the sites in use.
        logger.error(
            "a new worker did not start: the site file has an error; the workers already "
            "running keep the sites in use: %s",
            exc,
        )
        raise SystemExit(2) from None
    logger.info("worker %d serves sites: %s", os.getpid(), ", ".join(s.id for s in sites))
    return create_app(settings, open_checked(settings.db_url), sites)


def _serve(args: argparse.Namespace) -> int:
    from headcount_collector import logsetup
    from headcount_collector._processes import listen_problem

    log_config = logsetup.configure(args.log_level)
    # Limit flags are checked before the database is touched.
    limits = serverlimits.uvicorn_options(args)
    metrics_token = os.environ.get(METRICS_TOKEN_ENV, "").strip()
    settings = Settings(
        config_path=str(config_path(args.config)),
        db_url=resolve_db_url(args.db),
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level=args.log_level,
        retention_interval=args.retention_interval,
        max_keys_per_hour=args.max_keys_per_hour,
        reload_on_sighup=True,
        metrics_token_sha256=token_digest(metrics_token).hex() if metrics_token else "",
        metrics_port=args.metrics_port,
    )
    # Ports first, then the site file and one migration, before any worker starts: a
    # mistake stops the process with one clear message instead of one per worker.
    for host, port, option in (
        (settings.host, settings.port, "--port"),
        (args.metrics_host, settings.metrics_port, "--metrics-port"),
    ):
        problem = listen_problem(host, port) if port else None
        if problem is not None:
            raise ValueError(f"{problem} (another collector?); stop it or pick another {option}")
    sites = load_sites(settings.config_path)
    logger.info(
        "sites from %s: %s", Path(settings.config_path).resolve(), ", ".join(s.id for s in sites)
    )
    logger.info("storing counts in %s", describe_db(settings.db_url))
    store = open_checked(settings.db_url)
    store.migrate()
    store.close()
    os.environ[SETTINGS_ENV] = msgspec.json.encode(settings).decode()
    metrics_dir = _start_metrics(settings, args.metrics_host)
    try:
        _run_uvicorn(settings, log_config, limits)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _start_metrics(settings: Settings, host: str) -> str | None:
    """Point prometheus_client at a directory shared by the workers (so a scrape sums
    them all) and serve the separate metrics port, if asked for."""
    if not (settings.metrics_port or settings.metrics_token_sha256):
        return None
    from headcount_collector import metrics

    if importlib.util.find_spec("prometheus_client") is None:
        raise ValueError(metrics.install_hint)
    directory = tempfile.mkdtemp(prefix="headcount-metrics-")
    os.environ[metrics.MULTIPROCESS_ENV] = directory
    if settings.metrics_port:
        metrics.serve_on_port(host, settings.metrics_port)
        logger.info("metrics on http://%s:%d/metrics", host, settings.metrics_port)
    if settings.metrics_token_sha256:
        logger.info("metrics at /metrics for the token in %s", METRICS_TOKEN_ENV)
    return directory


def _run_uvicorn(settings: Settings, log_config: dict[str, Any], limits: dict[str, Any]) -> None:
    import inspect

    import uvicorn

    startup: dict[str, Any] = {}
    # A worker opens its database and fills its noise pool before it answers uvicorn's
    # health check; on a busy host that can take longer than the default 5 s, and the
    # supervisor then kills and restarts workers in a loop. (Older uvicorn has no check.)
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        startup["timeout_worker_healthcheck"] = 30
    uvicorn.run(
        "headcount_collector.cli:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # uvicorn's access log holds client addresses and query strings; ours does not.
        access_log=False,
        # Nor would its WebSocket protocols' log lines (the protocol refuses upgrades too).
        ws="none",
        proxy_headers=False,
        server_header=False,
        log_level=settings.log_level,
        # The same document in every worker: see logsetup.
        log_config=log_config,
        timeout_graceful_shutdown=10,
        **limits,  # httptools with header, deadline and connection limits
        **startup,
    )


def _init(args: argparse.Namespace) -> int:
    path = Path(args.config or os.environ.get("HEADCOUNT_CONFIG") or DEFAULT_CONFIG)
    if path.exists() and not args.force:
        print(f"headcount-collector: {path} exists; pass --force to overwrite", file=sys.stderr)
        return 1
    # Everything is checked before anything is written or any token is shown.
    problem = new_site_problem(args.site, args.timezone, "--site")
    if problem is not None:
        print(f"headcount-collector: {problem}", file=sys.stderr)
        return 2
    text, write_token, read_token = starter_config(args.site, args.timezone)
    from headcount_collector.config import parse_sites

    parse_sites(text, str(path))
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    print(f"Wrote {path}. These tokens are shown once and stored only as digests:")
    print(f"  write token (SDK):    {write_token}")
    print(f"  read token (queries): {read_token}")
    if path.resolve() != Path(DEFAULT_CONFIG).resolve():
        print(f"Start the collector with: headcount-collector serve --config {path}")
    else:
        print("Start the collector with: headcount-collector serve")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from headcount_collector import logsetup
    from headcount_collector.retention import run_retention

    logsetup.configure("warning")
    settings = Settings(config_path=str(config_path(args.config)), db_url=resolve_db_url(args.db))
    sites = load_sites(settings.config_path)
    store = open_existing(settings.db_url)
    print(f"purging {describe_db(settings.db_url)}")
    store.migrate()
    try:
        results = run_retention(store, list(sites), settings, time.time())
    finally:
        store.close()
    for site_id, result in results.items():
        if result is None:
            print(f"  {site_id}: failed (see the log above); nothing removed")
        else:
            print(
                f"  {site_id}: {result.hourly_rolled_up} hourly rows rolled up into days, "
                f"{result.daily_deleted} daily rows deleted"
            )
    return 0 if all(r is not None for r in results.values()) else 3


def _demo(args: argparse.Namespace) -> int:
    from headcount_collector.demo import run_demo

    return int(
        run_demo(port=args.port, app_port=args.app_port, duration=args.duration, keep=args.keep)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headcount-collector",
        description="Run and manage a Headcount collector (privacy-first web analytics).",
        epilog='Run "headcount-collector COMMAND --help" for the options of a command.',
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = f"site file (default: $HEADCOUNT_CONFIG, else ./{DEFAULT_CONFIG})"
    db_help = (
        "sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db; "
        "a relative SQLite path is resolved against the current directory and printed"
    )

    serve = sub.add_parser("serve", help="run the collector", formatter_class=HelpFormatter)
    serve.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    serve.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8787, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request: method, route template, status, duration "
        "(never an address or query string)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level, the same in every worker",
    )
    serve.add_argument(
        "--retention-interval",
        type=float,
        default=3600.0,
        help="seconds between retention runs (roll-up and deletion) in each worker",
    )
    serve.add_argument(
        "--max-keys-per-hour",
        type=int,
        default=10_000,
        help="distinct keys a site may create per table and hour; more count as (other), "
        "so one write token cannot fill the database",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics (operational figures only) on this port; 0: off. "
        f"Or set {METRICS_TOKEN_ENV} to serve them at /metrics for that bearer token",
    )
    serve.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics port")
    serverlimits.add_limit_arguments(serve)
    serve.set_defaults(run=_serve)

    init = sub.add_parser(
        "init", help="write a starter site file with fresh tokens", formatter_class=HelpFormatter
    )
    init.add_argument("--config", help=f"where to write it (default: ./{DEFAULT_CONFIG})")
    init.add_argument("--site", default="mysite", help="site id: a-z, 0-9, '-', '_'")
    init.add_argument("--timezone", default="UTC", help="IANA time zone of the site's days")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(run=_init)

    purge = sub.add_parser(
        "purge",
        help="apply retention now: roll up and delete old rows",
        formatter_class=HelpFormatter,
    )
    purge.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    purge.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    purge.set_defaults(run=_purge)

    demo = sub.add_parser(
        "demo",
        help="collector + instrumented Flask example + simulated visitors",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--port", type=int, default=8787, help="the collector's port")
    demo.add_argument("--app-port", type=int, default=8000, help="the example app's port")
    demo.add_argument("--duration", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (database, logs)"
    )
    demo.set_defaults(run=_demo)

    register_all(sub, HelpFormatter, config_help=config_help, db_help=db_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"headcount-collector: bad configuration: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"headcount-collector: the database is unavailable: {exc}", file=sys.stderr)
        return 3
    except ValueError as exc:
        print(f"headcount-collector: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
