"""Which client address links a visit: the peer, or what trusted proxies forwarded."""

from __future__ import annotations

import pytest

from headcount._proxies import ClientAddress
from headcount.integrations._common import asgi_request_info, environ_request_info

PROXIES = ClientAddress(["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"])


def test_without_trusted_proxies_the_peer_is_the_client_and_the_header_is_ignored() -> None:
    addresses = ClientAddress([])
    assert addresses.resolve("203.0.113.7", "198.51.100.1") == "203.0.113.7"
    assert addresses.resolve(None, "198.51.100.1") is None
    assert addresses.resolve("", None) is None


def test_an_untrusted_peer_cannot_name_another_client() -> None:
    assert PROXIES.resolve("203.0.113.7", "198.51.100.1") == "203.0.113.7"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("198.51.100.1", "198.51.100.1"),
        # Everything left of the rightmost untrusted hop was written by the client.
        ("6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("6.6.6.6,198.51.100.1, 10.1.2.3", "198.51.100.1"),
        ("198.51.100.1, 10.1.2.3, 127.0.0.1", "198.51.100.1"),
        ("198.51.100.1:51234", "198.51.100.1"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
        # Only trusted hops: the request came from inside; the first hop is the client.
        ("10.4.4.4, 10.1.2.3", "10.4.4.4"),
        ("2001:db8:ffff::9", "2001:db8:ffff::9"),
    ],
)
def test_a_trusted_peer_is_followed_to_the_rightmost_untrusted_address(
    forwarded_for: str, client: str
) -> None:
    assert PROXIES.resolve("127.0.0.1", forwarded_for) == client


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert PROXIES.resolve("10.0.0.5", None) == "10.0.0.5"
    assert PROXIES.resolve("10.0.0.5", "") == "10.0.0.5"


@pytest.mark.parametrize(
    "forwarded_for",
    ["unknown", "198.51.100.1, not-an-ip", "198.51.100.1, ", "<script>", "1.2.3.4.5"],
)
def test_a_chain_that_cannot_be_followed_links_nothing(forwarded_for: str) -> None:
    assert PROXIES.resolve("127.0.0.1", forwarded_for) is None


def test_a_padded_header_is_read_only_at_its_end() -> None:
    padded = ", ".join(["6.6.6.6"] * 10_000) + ", 198.51.100.1"
    assert PROXIES.resolve("127.0.0.1", padded) == "198.51.100.1"
    hops = ", ".join(["10.0.0.1"] * 40)
    # Forty trusted hops: only the last sixteen are looked at.
    assert PROXIES.resolve("127.0.0.1", hops) == "10.0.0.1"


def test_a_non_address_peer_is_passed_through_untrusted() -> None:
    # A unix socket peer or a name from some server: not a proxy we trust.
    assert PROXIES.resolve("unix:/run/app.sock", "198.51.100.1") == "unix:/run/app.sock"


def test_integrations_hand_the_forwarded_header_to_the_tracker() -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_X_FORWARDED_FOR": "198.51.100.1, 10.0.0.2",
    }
    info = environ_request_info(environ, "/", 200, 0.01, "text/html")
    assert (info.client_addr, info.forwarded_for) == ("127.0.0.1", "198.51.100.1, 10.0.0.2")

    scope = {
        "type": "http",
        "method": "GET",
        "client": ("127.0.0.1", 5000),
        "headers": [
            (b"X-Forwarded-For", b"198.51.100.1"),
            (b"user-agent", b"ua"),
            (b"x-forwarded-for", b"10.0.0.2"),
        ],
    }
    info = asgi_request_info(scope, "/", 200, 0.01, "text/html")
    # Two header lines are one list, in order.
    assert (info.client_addr, info.forwarded_for) == ("127.0.0.1", "198.51.100.1,10.0.0.2")
    info = asgi_request_info({"type": "http", "headers": []}, "/", 200, 0.01, None)
    assert (info.client_addr, info.forwarded_for) == (None, None)
