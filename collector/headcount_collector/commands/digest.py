"""``digest``: the SHA-256 digest of a token, as the site file stores it."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from headcount_collector.commands._common import Formatter
from headcount_collector.config import token_digest

__all__ = ["register"]

_TOKEN_PREFIXES = ("hcw_", "hcr_")


def _run(args: argparse.Namespace) -> int:
    # Read from stdin (or a prompt) rather than the command line, so the token does not
    # land in shell history or the process list.
    raw = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = raw.strip()
    if not token:
        print("headcount-collector: no token given on standard input", file=sys.stderr)
        return 2
    if token in ("%s", "$TOKEN"):
        print(
            f"headcount-collector: the input is the literal text {token!r}, not a token; "
            "pass the token itself on standard input",
            file=sys.stderr,
        )
        return 2
    if not token.startswith(_TOKEN_PREFIXES):
        # Tokens may be the operator's own; still, say so, since a slip in a pipe (an
        # unset variable, a stray format) would otherwise give a digest nothing matches.
        print(
            "headcount-collector: note: this token does not start with hcw_ or hcr_ "
            "(the tokens `init` and `token rotate` make); check what was read",
            file=sys.stderr,
        )
    print(token_digest(token).hex())
    return 0


def register(sub: argparse._SubParsersAction[Any], formatter: Formatter) -> None:
    parser = sub.add_parser(
        "digest",
        help="print the SHA-256 digest of a token read from standard input",
        description="Print the digest to put in write_token_sha256 or read_token_sha256. "
        "The token is read from standard input (or prompted for), never from the command "
        """line. Example: printf '%s' "$TOKEN" | headcount-collector digest""",
        formatter_class=formatter,
    )
    parser.set_defaults(run=_run)
