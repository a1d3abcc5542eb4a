"""The signed, expiring session cookie that holds which sites a browser has signed in to.

Each site's grant is an HMAC keyed by the collector's session secret (random, kept in the
database, so every worker and collector of it verifies the cookie) and that site's
read-token digest, so rotating a read token ends its sessions, and reading the site file
is not enough to forge one. The cookie never carries a token or a digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from headcount_collector.config import Site, SiteRegistry

__all__ = [
    "COOKIE_NAME",
    "MAX_SITES",
    "SESSION_SECONDS",
    "read_session",
    "session_end",
    "write_session",
]

COOKIE_NAME = "hc_session"
SESSION_SECONDS = 12 * 3600
# Bounds the cookie's size (and the work a forged cookie can cause).
MAX_SITES = 16
_GRANT = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63}):([0-9a-f]{64})$")


def _mac(site: Site, expires: int, secret: bytes) -> str:
    message = f"headcount-dashboard-session|{site.id}|{expires}".encode()
    return hmac.new(secret + site.read_token_sha256, message, hashlib.sha256).hexdigest()


def write_session(sites: Iterable[Site], expires: int, secret: bytes) -> str:
    """The cookie value granting ``sites`` until ``expires`` (Unix seconds)."""
    grants = [f"{site.id}:{_mac(site, expires, secret)}" for site in list(sites)[:MAX_SITES]]
    return ".".join([str(expires), *grants])


def read_session(
    value: str | None, registry: SiteRegistry, now: float, secret: bytes
) -> list[Site]:
    """The sites a cookie value still grants: none when it is expired, forged or malformed."""
    if not value or len(value) > 4096:
        return []
    expires = session_end(value)
    grants = value.split(".")[1:]
    if expires is None or expires <= now or len(grants) > MAX_SITES:
        return []
    sites: list[Site] = []
    for grant in grants:
        match = _GRANT.match(grant)
        site = registry.get(match.group(1)) if match else None
        if match is None or site is None or site in sites:
            continue
        if hmac.compare_digest(_mac(site, expires, secret), match.group(2)):
            sites.append(site)
    return sites


def session_end(value: str | None) -> int | None:
    """When a cookie value's grants expire, as it states it (read_session checks it)."""
    head = (value or "").split(".", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 12 else None
