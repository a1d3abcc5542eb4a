"""``sites list|add|remove`` and ``token rotate``: manage sites without hand-editing TOML.

Tokens are printed once, when they are made, and stored only as SHA-256 digests. A
running collector picks the changes up on SIGHUP (or a restart).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from headcount_collector.commands._common import Formatter, config_path, new_site_problem
from headcount_collector.commands._sitefile import SiteFile
from headcount_collector.config import load_sites

__all__ = ["register"]

_RELOAD_HINT = "A running collector uses the change after: kill -HUP <serve's process id>"


def _print_tokens(tokens: dict[str, str]) -> None:
    print("These tokens are shown once and stored only as digests:")
    for kind, token in tokens.items():
        label = "write token (SDK):   " if kind == "write" else "read token (queries):"
        print(f"  {label} {token}")


def _list(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    for site in load_sites(path):
        events = ", ".join(sorted(site.events)) or "-"
        release = "noise" if site.policy.noise else "EXACT"
        print(
            f"{site.id}\trelease={release}\ttimezone={site.timezone.key}\tk={site.k}\t"
            f"hourly_days={site.hourly_days}\tkeep_days={site.keep_days}\tevents={events}"
        )
    return 0


def _add(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    problem = new_site_problem(args.id, args.timezone)
    if problem is not None:
        print(f"headcount-collector: {problem}", file=sys.stderr)
        return 2
    file = SiteFile(path)
    if any(table.get("id") == args.id for table in file.sites):
        print(f"headcount-collector: {path} already has a site {args.id!r}", file=sys.stderr)
        return 1
    from headcount_collector.commands._sitefile import new_token
    from headcount_collector.config import token_digest

    tokens = {"write": new_token("write"), "read": new_token("read")}
    file.add(
        {
            "id": args.id,
            "timezone": args.timezone,
            "write_token_sha256": token_digest(tokens["write"]).hex(),
            "read_token_sha256": token_digest(tokens["read"]).hex(),
            "k": args.k,
            "hourly_days": args.hourly_days,
            "keep_days": args.keep_days,
            # Written only when asked for: the file then says so where it is read.
            **({"exact_counts": True} if args.exact_counts else {}),
        }
    )
    file.save()
    print(f"Added site {args.id!r} to {path}.")
    _print_tokens(tokens)
    print(_RELOAD_HINT)
    return 0


def _remove(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    file = SiteFile(path)
    file.find(args.id)
    if len(file.sites) == 1:
        print("headcount-collector: cannot remove the only site", file=sys.stderr)
        return 1
    file.remove(args.id)
    file.save()
    print(
        f"Removed site {args.id!r} from {path}. Its tokens stop working after a reload; its "
        "stored counts stay in the database, and retention no longer runs for it."
    )
    print(_RELOAD_HINT)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    file = SiteFile(path)
    site = file.find(args.id)
    kinds = ["write", "read"] if args.kind == "both" else [args.kind]
    tokens = {kind: file.set_token(site, kind) for kind in kinds}
    file.save()
    print(f"New {' and '.join(kinds)} token for site {args.id!r} in {path}; the old one stops")
    print("working when the collector reloads.")
    _print_tokens(tokens)
    print(_RELOAD_HINT)
    return 0


def register(
    sub: argparse._SubParsersAction[Any], formatter: Formatter, *, config_help: str
) -> None:
    sites = sub.add_parser(
        "sites",
        help="list, add or remove sites in the site file (comments are kept)",
        formatter_class=formatter,
    )
    actions = sites.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="one line per site", formatter_class=formatter)
    listing.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    listing.set_defaults(run=_list)

    add = actions.add_parser(
        "add", help="add a site with fresh tokens, printed once", formatter_class=formatter
    )
    add.add_argument("id", help="site id: a-z, 0-9, '-', '_'")
    add.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    add.add_argument("--timezone", default="UTC", help="IANA time zone of the site's days")
    add.add_argument("--k", type=int, default=5, help="released counts below k are withheld")
    add.add_argument("--hourly-days", type=int, default=30, help="days hourly rows are kept")
    add.add_argument("--keep-days", type=int, default=760, help="days daily rows are kept")
    add.add_argument(
        "--exact-counts",
        action="store_true",
        help="a test site that releases exact counts at once, without noise (never for a "
        "real site's visitors; see the README's Privacy)",
    )
    add.set_defaults(run=_add)

    remove = actions.add_parser(
        "remove", help="remove a site (its stored counts stay)", formatter_class=formatter
    )
    remove.add_argument("id", help="the site's id")
    remove.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    remove.set_defaults(run=_remove)

    token = sub.add_parser(
        "token", help="rotate a site's tokens (printed once)", formatter_class=formatter
    )
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = token_actions.add_parser(
        "rotate",
        help="replace a site's write and/or read token; prints the new one once",
        formatter_class=formatter,
    )
    rotate.add_argument("id", help="the site's id")
    rotate.add_argument(
        "--kind", choices=["write", "read", "both"], default="both", help="which token"
    )
    rotate.add_argument("--config", help=config_help, default=argparse.SUPPRESS)
    rotate.set_defaults(run=_rotate)
