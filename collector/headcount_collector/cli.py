"""``headcount-collector``: serve, init, purge, demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from headcount_collector import serverlimits
from headcount_collector.config import Settings, load_sites, starter_config
from headcount_collector.errors import ConfigError, StoreUnavailable

__all__ = ["main", "settings_from_environment"]

SETTINGS_ENV = "HEADCOUNT_COLLECTOR_SETTINGS"
CONFIG_ENV = "HEADCOUNT_CONFIG"


def _config_path(value: str | None) -> str:
    path = value or os.environ.get(CONFIG_ENV)
    if not path:
        raise SystemExit("headcount-collector: no site file; pass --config or set HEADCOUNT_CONFIG")
    return path


def settings_from_environment() -> Settings:
    """The settings the CLI handed to uvicorn's worker processes."""
    return msgspec.json.decode(os.environ[SETTINGS_ENV], type=Settings)


def app_from_environment():  # type: ignore[no-untyped-def]
    """uvicorn factory for worker processes (they re-import the app by name)."""
    from headcount_collector.app import create_app
    from headcount_collector.stores import open_store

    settings = settings_from_environment()
    return create_app(settings, open_store(settings.db_url))


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from headcount_collector.stores import open_store

    settings = Settings(
        config_path=_config_path(args.config),
        db_url=args.db,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level=args.log_level,
    )
    _configure_logging(settings.log_level)
    limits = serverlimits.uvicorn_options(args)
    # Check the site file and migrate once, before any worker starts, so a bad config
    # stops the process with one clear message instead of one per worker.
    load_sites(settings.config_path)
    store = open_store(settings.db_url)
    store.migrate()
    store.close()
    os.environ[SETTINGS_ENV] = msgspec.json.encode(settings).decode()
    uvicorn.run(
        "headcount_collector.cli:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # uvicorn's access log holds client addresses and query strings; ours does not.
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=10,
        **limits,  # httptools with header, deadline and connection limits
    )
    return 0


def _init(args: argparse.Namespace) -> int:
    path = Path(args.config or os.environ.get(CONFIG_ENV) or "headcount.toml")
    if path.exists() and not args.force:
        print(f"headcount-collector: {path} exists; pass --force to overwrite", file=sys.stderr)
        return 1
    text, write_token, read_token = starter_config(args.site, args.timezone)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    print(f"Wrote {path}. These tokens are shown once and stored only as digests:")
    print(f"  write token (SDK):    {write_token}")
    print(f"  read token (queries): {read_token}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from headcount_collector.app import run_retention
    from headcount_collector.stores import open_store

    _configure_logging("info")
    settings = Settings(config_path=_config_path(args.config), db_url=args.db)
    sites = load_sites(settings.config_path)
    store = open_store(settings.db_url)
    store.migrate()
    try:
        run_retention(store, list(sites), settings, time.time())
    finally:
        store.close()
    print("retention applied")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from headcount_collector.demo import run_demo

    return int(run_demo(port=args.port, app_port=args.app_port, duration=args.duration))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headcount-collector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    db_default = "sqlite:///./headcount.sqlite3"

    serve = sub.add_parser("serve", help="run the collector")
    serve.add_argument("--config", help="site file (or env HEADCOUNT_CONFIG)")
    serve.add_argument("--db", default=db_default, help="sqlite:///path or postgresql://...")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true", help="log IP-free request lines")
    serve.add_argument("--log-level", default="info")
    serverlimits.add_limit_arguments(serve)
    serve.set_defaults(run=_serve)

    init = sub.add_parser("init", help="write a starter site file with fresh tokens")
    init.add_argument("--config", help="where to write it (default headcount.toml)")
    init.add_argument("--site", default="mysite")
    init.add_argument("--timezone", default="UTC")
    init.add_argument("--force", action="store_true")
    init.set_defaults(run=_init)

    purge = sub.add_parser("purge", help="apply retention now: roll up and delete old rows")
    purge.add_argument("--config")
    purge.add_argument("--db", default=db_default)
    purge.set_defaults(run=_purge)

    demo = sub.add_parser("demo", help="collector + instrumented Flask example + traffic")
    demo.add_argument("--port", type=int, default=8787)
    demo.add_argument("--app-port", type=int, default=8000)
    demo.add_argument("--duration", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
