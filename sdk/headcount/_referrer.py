"""Referrer coarsening: a bare domain, or (direct) / (internal) / (other)."""

from __future__ import annotations

import re
from functools import lru_cache

from headcount.wire import DIRECT, INTERNAL, OTHER, REFERRER_PATTERN

__all__ = ["coarsen_referrer", "domain_of_host"]

_REFERRER = re.compile(REFERRER_PATTERN)
_MAX_DOMAIN = 253
_MAX_PREFIX = 512
_AUTHORITY_END = re.compile(r"[/?#\\]")
_IPV4ISH = re.compile(r"^[0-9.]+$")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_SITES = {site: site for site in ("same-origin", "same-site", "cross-site", "none")}


@lru_cache(maxsize=4096)
def domain_of_host(host: str) -> str | None:
    """The bare lowercase domain of a host (``user@www.Example.com:8080`` → ``example.com``).

    None for an IP literal or anything that is not a valid domain name. Cached per host
    string: a site sees few distinct referring hosts and a single request host.
    """
    host = host.rpartition("@")[2]
    if host.startswith("["):
        return None  # IPv6 literal
    host = host.partition(":")[0].rstrip(".").lower()
    if not host or len(host) > _MAX_DOMAIN or _CONTROL_OR_SPACE.search(host):
        return None
    if _IPV4ISH.match(host):
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.removeprefix("www.")
    if len(host) > _MAX_DOMAIN or not _REFERRER.fullmatch(host) or host.startswith("("):
        return None
    return host


@lru_cache(maxsize=4096)
def _referrer_domain(authority_and_more: str) -> str | None:
    """The domain of an absolute http(s) URL's authority, or None; the path is never read."""
    scheme, sep, rest = authority_and_more.partition("://")
    if not sep or scheme.strip().lower() not in ("http", "https"):
        return None
    match = _AUTHORITY_END.search(rest)
    return domain_of_host(rest[: match.start()] if match else rest)


def coarsen_referrer(referer: str | None, host: str | None, sec_fetch_site: str | None) -> str:
    """Where a pageview came from, as the wire's Referrer field allows.

    - ``Sec-Fetch-Site: same-origin``, or a referrer on the request's own host → (internal)
    - no referrer with ``Sec-Fetch-Site: none`` or absent (old browsers) → (direct)
    - no referrer but ``Sec-Fetch-Site`` cross-site/same-site (the referring page hid
      itself) → (other)
    - a referrer that is an IP literal, not http(s), unparsable or not a valid domain →
      (other); otherwise its bare domain.
    """
    if sec_fetch_site is not None:
        site = _SITES.get(sec_fetch_site) or sec_fetch_site.strip().lower()
        if site == "same-origin":
            return INTERNAL
    else:
        site = None
    if not referer:
        return DIRECT if site in (None, "none") else OTHER
    # Only the scheme and authority matter, and they end at the third slash: cache on
    # that prefix so each referring site costs one parse, whatever pages it links from.
    cut = referer.find("/", referer.find("//") + 2)
    prefix = referer if cut < 0 else referer[:cut]
    if len(prefix) > _MAX_PREFIX:
        return OTHER  # no real scheme + authority is this long; keeps the cache small
    return _referrer_from_prefix(prefix, host)


@lru_cache(maxsize=4096)
def _referrer_from_prefix(prefix: str, host: str | None) -> str:
    domain = _referrer_domain(prefix)
    if domain is None:
        return OTHER
    if host and domain == domain_of_host(host):
        return INTERNAL
    return domain
