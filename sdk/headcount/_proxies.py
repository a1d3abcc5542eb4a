"""The client address a visit is linked by: the peer, or what trusted proxies say it is."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

__all__ = ["ClientAddress"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# No real proxy chain is longer; a longer header is someone padding it.
_MAX_HOPS: Final = 16
_MAX_HEADER: Final = 2048


def _parse(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("["):
        # "[2001:db8::1]:443" or "[2001:db8::1]": some proxies keep the brackets.
        end = text.find("]")
        text = text[1:end] if end > 0 else text
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # "203.0.113.7:51234"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddress:
    """Resolves the address of the browser behind a request.

    Without trusted proxies the peer address is taken as it is: the one the app already
    trusts (werkzeug's ``ProxyFix``, Django's ``REMOTE_ADDR``, the ASGI server's
    ``client``). With them, a request whose peer is a trusted proxy is attributed to the
    rightmost address in ``X-Forwarded-For`` that is not itself a trusted proxy: every
    address left of it could have been written by the client.
    """

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in trusted_proxies
        )
        # Cached: a site sits behind a handful of proxy addresses.
        self._is_trusted = lru_cache(maxsize=1024)(self._compute_is_trusted)

    @property
    def trusts_proxies(self) -> bool:
        """False when the peer is always the client, so callers may skip ``resolve``."""
        return bool(self._networks)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address, or None when there is none to trust."""
        if not peer:
            return None
        if not self._networks or not self._is_trusted(peer):
            return peer
        if not forwarded_for:
            return peer
        hops = forwarded_for[-_MAX_HEADER:].split(",")[-_MAX_HOPS:]
        for hop in reversed(hops):
            address = _parse(hop)
            if address is None:
                # A trusted proxy would never write this: the chain cannot be followed.
                return None
            if not self._trusted_address(address):
                return str(address)
        # Every hop is a trusted proxy: the request came from inside.
        address = _parse(hops[0])
        return str(address) if address is not None else None

    def _compute_is_trusted(self, peer: str) -> bool:
        address = _parse(peer)
        return address is not None and self._trusted_address(address)

    def _trusted_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self._networks)
