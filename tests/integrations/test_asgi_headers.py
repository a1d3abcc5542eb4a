"""Reading a request's headers from an ASGI scope, checked against the rule written out
plainly: names in any case, the first line of a header wins, Sec-Purpose before Purpose
before X-Purpose, and every X-Forwarded-For line, in order, joined into one list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from headcount.integrations._common import asgi_request_info

_READ = {
    "host": "host",
    "referer": "referer",
    "sec-fetch-site": "sec_fetch_site",
    "sec-fetch-dest": "sec_fetch_dest",
    "user-agent": "user_agent",
}
_PURPOSES = ("sec-purpose", "purpose", "x-purpose")
_NAMES = [*_READ, *_PURPOSES, "x-forwarded-for", "accept", "cookie", "x-forwarded-host"]


def expected(headers: list[tuple[bytes, bytes]]) -> dict[str, str | None]:
    lowered = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers]
    first: dict[str, str] = {}
    for name, value in lowered:
        first.setdefault(name, value)
    purpose = next((first[name] for name in _PURPOSES if name in first), None)
    forwarded = [value for name, value in lowered if name == "x-forwarded-for"]
    fields: dict[str, str | None] = {field: first.get(name) for name, field in _READ.items()}
    fields["purpose"] = purpose
    fields["forwarded_for"] = ",".join(forwarded) if forwarded else None
    return fields


def spellings(name: str) -> st.SearchStrategy[bytes]:
    """``name`` as a server gives it (lowercase) or as an app might (any case)."""
    return st.sampled_from(
        [name, name.upper(), name.title(), name.swapcase() if name.islower() else name]
    ).map(lambda spelled: spelled.encode("latin-1"))


_HEADER = st.sampled_from(_NAMES).flatmap(
    lambda name: st.tuples(spellings(name), st.binary(max_size=12))
)


@given(st.lists(_HEADER, max_size=16))
def test_headers_are_read_as_the_rule_says(headers: list[tuple[bytes, bytes]]) -> None:
    info = asgi_request_info({"type": "http", "headers": headers}, "/", 200, 0.01, None)
    read = {field: getattr(info, field) for field in expected(headers)}
    assert read == expected(headers)


def test_a_browsers_headers_with_a_proxy_chain() -> None:
    headers = [
        (b"host", b"shop.example"),
        (b"user-agent", b"Mozilla/5.0"),
        (b"X-Forwarded-For", b"203.0.113.9, 10.0.0.2"),
        (b"purpose", b"prefetch"),
        (b"sec-fetch-site", b"cross-site"),
        (b"x-forwarded-for", b"10.0.0.3"),
        (b"Sec-Purpose", b"prefetch;prerender"),
        (b"referer", b"https://www.example.org/a"),
        (b"Host", b"evil.example"),
    ]
    scope = {"type": "http", "headers": headers, "client": ("10.0.0.4", 1), "query_string": b""}
    info = asgi_request_info(scope, "/", 200, 0.01, None)
    assert (info.host, info.purpose, info.forwarded_for, info.client_addr) == (
        "shop.example",
        "prefetch;prerender",
        "203.0.113.9, 10.0.0.2,10.0.0.3",
        "10.0.0.4",
    )
