"""``export``: a site's released numbers as CSV or JSON, exactly what ``/v1/stats`` answers.

It goes through the same query and suppression code as the HTTP API, so an export never
holds a number the API would withhold.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from headcount_collector.commands._common import Formatter, config_path, unknown_site
from headcount_collector.config import load_sites
from headcount_collector.database import DEFAULT_DB_URL, open_existing, resolve_db_url
from headcount_collector.errors import QueryRejected
from headcount_collector.query import parse_stats_query, render_csv, run_stats_query

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    sites = load_sites(path)
    site = sites.get(args.site)
    if site is None:
        raise unknown_site(path, args.site, [known.id for known in sites])
    params: list[tuple[str, str]] = [("metric", args.metric), ("interval", args.interval)]
    params += [(name, value) for name, value in (("from", args.start), ("to", args.end)) if value]
    params += [("by", value) for value in args.by]
    params += [("filter", value) for value in args.filter]
    if args.limit is not None:
        params.append(("limit", str(args.limit)))
    now = time.time()
    store = open_existing(resolve_db_url(args.db))
    try:
        try:
            query = parse_stats_query(params, site, now)
        except QueryRejected as exc:
            print(f"headcount-collector: --{exc.parameter}: {exc.error}", file=sys.stderr)
            return 2
        result = run_stats_query(store, site, query, now)
    finally:
        store.close()
    if args.format == "csv":
        text = render_csv(result)
    else:
        text = msgspec.json.format(msgspec.json.encode(result).decode(), indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({args.format}, site {site.id}, k={site.k})", file=sys.stderr)
    return 0


def register(
    sub: argparse._SubParsersAction[Any], formatter: Formatter, *, config_help: str, db_help: str
) -> None:
    parser = sub.add_parser(
        "export",
        help="write a site's released numbers (as /v1/stats answers them) as CSV or JSON",
        formatter_class=formatter,
    )
    parser.add_argument("site", help="the site's id")
    parser.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    parser.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    parser.add_argument(
        "--metric",
        default="pageviews",
        help="pageviews, entries, requests, events, bots or visits",
    )
    parser.add_argument("--interval", default="day", help="hour, day, week, month or total")
    parser.add_argument(
        "--from", dest="start", help="first day or hour, e.g. 2026-11-01 (default: 7 days ago)"
    )
    parser.add_argument("--to", dest="end", help="end, exclusive (default: now)")
    parser.add_argument(
        "--by", action="append", default=[], help="group by a dimension (repeatable)"
    )
    parser.add_argument("--filter", action="append", default=[], help="dim:value (repeatable)")
    parser.add_argument("--limit", type=int, help="rows per time bucket (1-1000)")
    parser.add_argument("--format", choices=["csv", "json"], default="csv", help="file format")
    parser.add_argument("--output", "-o", default="-", help="file to write; - for stdout")
    parser.set_defaults(run=_run)
