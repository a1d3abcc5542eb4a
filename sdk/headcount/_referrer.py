"""Referrer coarsening: a registrable domain, or (direct) / (internal) / (other)."""

from __future__ import annotations

import re
from functools import lru_cache

from headcount._shapes import referrer_domain
from headcount.wire import DIRECT, INTERNAL, OTHER

__all__ = ["coarsen_referrer", "domain_of_host"]

_MAX_PREFIX = 512
_AUTHORITY_END = re.compile(r"[/?#\\]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_SITES = {site: site for site in ("same-origin", "same-site", "cross-site", "none")}
_DEFAULT_PORTS = (":80", ":443")
# A DNS name (253) and a port: a longer Host header is no host, and what a client sends
# must not make the caches below large (each keeps up to 4,096 of them).
_MAX_HOST = 262


def _host_and_port(authority: str) -> str:
    """``user@Host:port`` as ``host:port`` in lowercase, without user info or a default port."""
    host_port = authority.rpartition("@")[2].strip().lower()
    for default in _DEFAULT_PORTS:
        if host_port.endswith(default):
            host_port = host_port[: -len(default)]
    if host_port.startswith("["):
        return host_port  # an IPv6 literal keeps its brackets
    host, sep, port = host_port.partition(":")
    return host.rstrip(".") + sep + port


@lru_cache(maxsize=4096)
def domain_of_host(host: str) -> str | None:
    """The registrable domain of a host (``user@www.Example.co.uk:8080`` → ``example.co.uk``).

    None for an IP literal, a local name or anything that is not a public host name.
    Cached per host string: a site sees few distinct referring hosts and a single
    request host.
    """
    host_port = _host_and_port(host)
    if host_port.startswith("[") or _CONTROL_OR_SPACE.search(host_port):
        return None
    return referrer_domain(host_port.partition(":")[0])


def coarsen_referrer(referer: str | None, host: str | None, sec_fetch_site: str | None) -> str:
    """Where a pageview came from, as the wire's Referrer field allows.

    - ``Sec-Fetch-Site: same-origin``, a referrer on the request's own host and port (IP
      addresses included), or on the request host's registrable domain → (internal)
    - no referrer with ``Sec-Fetch-Site: none`` or absent (old browsers) → (direct)
    - no referrer but ``Sec-Fetch-Site`` cross-site/same-site (the referring page hid
      itself) → (other)
    - a referrer that is an IP literal, a local name (single label, ``.local``,
      ``.internal``, ``.lan``, ``localhost``), a host embedding an IP address, not
      http(s), unparsable or token-like → (other); otherwise its registrable domain.
    """
    if sec_fetch_site is not None:
        site = _SITES.get(sec_fetch_site) or sec_fetch_site.strip().lower()
        if site == "same-origin":
            return INTERNAL
    else:
        site = None
    if not referer:
        return DIRECT if site in (None, "none") else OTHER
    if host and (len(host) > _MAX_HOST or "@" in host):
        # User info in a Host header (jane@shop.example) decides nothing, as in a
        # referrer, and must not sit in the caches either.
        host = host.rpartition("@")[2]
        if len(host) > _MAX_HOST:
            host = None
    # Only the scheme and authority matter: cache on them, so each referring site costs
    # one parse whatever pages it links from. Nothing else may reach the cache key: a
    # referrer that is no http(s) URL (mailto:jdoe@…) is (other) outright.
    scheme_end = referer.find("://")
    if scheme_end not in (4, 5):
        return OTHER
    cut = referer.find("/", scheme_end + 3)
    prefix = referer if cut < 0 else referer[:cut]
    if "?" in prefix or "#" in prefix or "\\" in prefix:
        # The authority ended before the path's slash (https://example.com?email=…).
        end = _AUTHORITY_END.search(prefix, scheme_end + 3)
        if end is not None:
            prefix = prefix[: end.start()]
    if len(prefix) > _MAX_PREFIX:
        return OTHER  # no real scheme + authority is this long; keeps the cache small
    if "@" in prefix:
        # User info (bob:secret@host) decides nothing and must not sit in the cache; the
        # prefix is scheme and authority only by now.
        scheme, slashes, authority = prefix.partition("//")
        prefix = scheme + slashes + authority.rpartition("@")[2]
    return _referrer_from_prefix(prefix, host)


@lru_cache(maxsize=4096)
def _referrer_from_prefix(prefix: str, host: str | None) -> str:
    scheme, sep, rest = prefix.partition("://")
    if not sep or scheme.strip().lower() not in ("http", "https"):
        return OTHER
    match = _AUTHORITY_END.search(rest)
    authority = rest[: match.start()] if match else rest
    if host and _host_and_port(authority) == _host_and_port(host):
        return INTERNAL  # the site itself, even when it is reached by an IP address
    domain = domain_of_host(authority)
    if domain is None:
        return OTHER
    if host and domain == domain_of_host(host):
        return INTERNAL
    return domain
