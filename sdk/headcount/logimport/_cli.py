"""``headcount import``: the command line around the importer."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

import httpx

from headcount._errors import HeadcountError
from headcount._version import __version__
from headcount.logimport._formats import FORMAT_NAMES, parser_for
from headcount.logimport._importer import BadLogLine, Importer, ImportFailed, ImportSummary
from headcount.logimport._reader import LineSource
from headcount.logimport._routes import load_resolver

__all__ = ["main"]

_PROGRESS_EVERY = 0.5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headcount")
    parser.add_argument("--version", action="version", version=f"headcount {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser(
        "import",
        help="count an access log's history through the SDK's rules and send hourly counts",
    )
    cmd.add_argument(
        "files", nargs="+", metavar="FILE", help="log files (gzip or plain); - for stdin"
    )
    cmd.add_argument(
        "--endpoint",
        default=os.environ.get("HEADCOUNT_ENDPOINT"),
        metavar="URL",
        help="the collector, e.g. http://127.0.0.1:8787 (default: $HEADCOUNT_ENDPOINT)",
    )
    cmd.add_argument(
        "--write-token",
        default=os.environ.get("HEADCOUNT_WRITE_TOKEN"),
        metavar="TOKEN",
        help="the site's write token, hcw_... (default: $HEADCOUNT_WRITE_TOKEN)",
    )
    cmd.add_argument(
        "--format",
        default="combined",
        help=f"one of {', '.join(FORMAT_NAMES)} (default: combined)",
    )
    routers = cmd.add_mutually_exclusive_group()
    routers.add_argument("--app", metavar="MODULE:ATTR", help="a Flask, Starlette or FastAPI app")
    routers.add_argument("--django-settings", metavar="MOD", help="a Django settings module")
    routers.add_argument(
        "--routes", metavar="FILE", help="route templates, one a line, for apps without a router"
    )
    cmd.add_argument(
        "--host",
        help="the site's host name, for logs without one: tells internal referrers apart",
    )
    cmd.add_argument("--follow", action="store_true", help="keep reading a growing log")
    cmd.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="with --follow: finish once nothing was written for this long",
    )
    cmd.add_argument(
        "--send-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --follow: send the hours that have ended this often (default: 60)",
    )
    cmd.add_argument(
        "--append",
        action="store_true",
        help="fill only hours after the site's last stored hour (a site counted from its "
        "logs alone, imported after each rotation), instead of hours before its first",
    )
    cmd.add_argument("--dry-run", action="store_true", help="print the batches, send nothing")
    cmd.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="count lines that do not fit the format as skipped instead of stopping",
    )
    cmd.add_argument("--no-visits", action="store_true", help="do not rebuild visits")
    cmd.add_argument("--visit-gap", type=float, help="seconds (default: the SDK's)")
    cmd.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="proxy addresses whose X-Forwarded-For is believed (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _import(args)
    except BadLogLine as exc:
        print(
            f"headcount import: {exc} (read as --format {args.format}; choose the log's "
            "format with --format, or pass --skip-bad-lines to go on past such lines)",
            file=sys.stderr,
        )
        return 1
    except httpx.TransportError as exc:
        print(
            f"headcount import: cannot reach the collector at {args.endpoint}: {exc}",
            file=sys.stderr,
        )
        return 1
    except (HeadcountError, ValueError, OSError, httpx.HTTPError) as exc:
        print(f"headcount import: {exc}", file=sys.stderr)
        return 1


def _import(args: argparse.Namespace) -> int:
    if not args.dry_run and not (args.endpoint and args.write_token):
        raise ImportFailed("--endpoint and --write-token are required (or --dry-run)")
    parser = parser_for(args.format)
    resolver = load_resolver(args.app, args.django_settings, args.routes)
    options: dict[str, Any] = {"trusted_proxies": tuple(args.trusted_proxy)}
    if args.no_visits:
        options["visits"] = False
    else:
        options["visits_store"] = "memory"
    if args.visit_gap is not None:
        options["visit_gap"] = args.visit_gap
    source = LineSource(args.files, follow=args.follow, idle_exit=args.idle_exit)
    client = None
    if args.endpoint and args.write_token:
        client = httpx.Client(
            base_url=args.endpoint.rstrip("/"),
            headers={"authorization": f"Bearer {args.write_token}"},
            timeout=30.0,
        )
    try:
        importer = Importer(
            parser,
            resolver,
            client=client,
            tracker_options=options,
            dry_run=args.dry_run,
            skip_bad_lines=args.skip_bad_lines,
            host=args.host,
            append=args.append,
            follow=args.follow,
            send_every=args.send_every,
            # A router's rules are the app's text; a routes file's fallback is a path.
            routes_from_app=bool(args.app or args.django_settings),
        )
        bar = _Progress(source, sys.stderr) if sys.stderr.isatty() else None
        summary = importer.run(source, bar.show if bar else None)
        if bar is not None:
            bar.done()
    finally:
        if client is not None:
            client.close()
    print(_summary_text(summary, args.dry_run), file=sys.stderr)
    return 0


class _Progress:
    def __init__(self, source: LineSource, stream: IO[str]) -> None:
        self._source = source
        self._stream = stream
        self._started = time.monotonic()
        self._shown = 0.0

    def show(self, summary: ImportSummary) -> None:
        now = time.monotonic()
        if now - self._shown < _PROGRESS_EVERY:
            return
        self._shown = now
        rate = summary.lines / max(now - self._started, 1e-9)
        total = self._source.total_bytes
        done = self._source.bytes_read
        eta = ""
        if total and 0 < done < total:
            eta = f", ETA {((now - self._started) * (total - done) / done):.0f} s"
        self._stream.write(f"\r{summary.lines:,} lines, {rate:,.0f} lines/s{eta}   ")
        self._stream.flush()

    def done(self) -> None:
        self._stream.write("\n")


def _hour_text(hour: int) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%d %H:00Z")


def _summary_text(summary: ImportSummary, dry_run: bool) -> str:
    lines = [
        f"lines read: {summary.lines}",
        f"pageviews: {summary.pageviews}",
        f"requests: {summary.requests}",
        f"bots: {summary.bots}",
        f"visits: {summary.visits}",
    ]
    for reason, n in sorted(summary.skipped.items()):
        lines.append(f"skipped ({reason}): {n}")
    if summary.hours:
        lines.append(
            f"hours covered: {len(summary.hours)}, "
            f"{_hour_text(summary.hours[0])} to {_hour_text(summary.hours[-1] + 3600)}"
        )
    else:
        lines.append("hours covered: 0")
    if dry_run:
        lines.append("dry run: nothing was sent")
    else:
        lines.append(
            f"records accepted: {summary.accepted}, "
            f"batches already imported: {summary.duplicate_batches}"
        )
        # Counts for hours sealed while the import ran (it skips those sealed before):
        # stored and counted in their open day, never in their sealed hour.
        lines.append(f"late (hours sealed meanwhile; counted in their day only): {summary.late}")
    return "\n".join(lines)
