"""Ingest against a real collector (CLI + uvicorn): every status and every rejection rule.

Each rejection also proves that nothing from the batch was stored.
"""

from __future__ import annotations

import gzip
import json
import secrets
from typing import Any

import httpx
import msgspec
import pytest

from headcount import wire
from tests._servers import CollectorProcess
from tests.collector.conftest import (
    auth,
    batch_body,
    current_hour,
    pageview,
    request_record,
    sqlite_snapshot,
)
from tests.conftest import READ_TOKEN

pytestmark = pytest.mark.slow


def post(
    server: CollectorProcess, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/ingest", content=body, headers=headers or auth(), timeout=10
    )


def event(name: str = "signup", props: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "kind": "event",
        "hour": current_hour(),
        "name": name,
        "route": "/signup",
        "props": {"plan": "pro"} if props is None else props,
        "n": 1,
    }


H = current_hour()
# (id, records, expected error path)
REJECTED_RECORDS: list[tuple[str, list[dict[str, Any]], str]] = [
    ("unknown-field", [pageview(ip="203.0.113.9")], "$.records[0].ip"),
    (
        "missing-field",
        [{k: v for k, v in pageview().items() if k != "referrer"}],
        "$.records[0].referrer",
    ),
    ("unknown-kind", [{"kind": "click", "hour": H, "n": 1}], "$.records[0].kind"),
    ("hour-not-boundary", [pageview(hour=H + 60)], "$.records[0].hour"),
    ("hour-future", [pageview(hour=H + 3 * 3600)], "$.records[0].hour"),
    ("hour-too-old", [pageview(hour=H - 31 * 86400)], "$.records[0].hour"),
    ("hour-negative", [pageview(hour=-3600)], "$.records[0].hour"),
    ("latency-label", [request_record(latency="12ms")], "$.records[0].latency"),
    ("status-class", [request_record(status="200")], "$.records[0].status"),
    ("route-query", [pageview(route="/search?q=alice")], "$.records[0].route"),
    ("route-fragment", [pageview(route="/page#section")], "$.records[0].route"),
    ("route-dotdot", [pageview(route="/a/../etc/passwd")], "$.records[0].route"),
    ("route-too-long", [pageview(route="/" + "a" * 200)], "$.records[0].route"),
    ("route-long-number", [pageview(route="/users/12345")], "$.records[0].route"),
    (
        "route-uuid",
        [pageview(route="/o/550e8400-e29b-41d4-a716-446655440000")],
        "$.records[0].route",
    ),
    ("route-hex", [pageview(route="/t/deadbeefcafebabe1234")], "$.records[0].route"),
    ("route-token", [pageview(route="/reset/eyJhbGciOiJIUzI1NiJ9x")], "$.records[0].route"),
    ("route-email", [pageview(route="/u/alice@example.com")], "$.records[0].route"),
    (
        "route-token-in-braces",
        [pageview(route="/invite/{sk_live_4eC39HqLyjWDarjtT1zdp7dc}")],
        "$.records[0].route",
    ),
    ("route-number-in-braces", [pageview(route="/p/{alice_smith_1985}")], "$.records[0].route"),
    ("route-email-encoded", [pageview(route="/u/alice%40example.com")], "$.records[0].route"),
    ("route-ipv4", [pageview(route="/host/192.168.1.10")], "$.records[0].route"),
    ("route-ipv6", [pageview(route="/host/2001:db8::1")], "$.records[0].route"),
    ("route-not-absolute", [pageview(route="users")], "$.records[0].route"),
    ("route-empty", [pageview(route="")], "$.records[0].route"),
    ("referrer-url", [pageview(referrer="https://example.com/path")], "$.records[0].referrer"),
    ("referrer-ip", [pageview(referrer="10.0.0.1")], "$.records[0].referrer"),
    ("referrer-case", [pageview(referrer="Example.COM")], "$.records[0].referrer"),
    ("referrer-port", [pageview(referrer="example.com:8080")], "$.records[0].referrer"),
    ("utm-not-slug", [pageview(utm_campaign="Spring Sale!")], "$.records[0].utm_campaign"),
    ("utm-too-long", [pageview(utm_source="a" * 65)], "$.records[0].utm_source"),
    ("n-zero", [pageview(n=0)], "$.records[0].n"),
    ("event-undeclared", [event(name="purchase")], "$.records[0].name"),
    ("prop-undeclared", [event(props={"color": "red"})], "$.records[0].props"),
    ("prop-value-undeclared", [event(props={"plan": "enterprise"})], "$.records[0].props.plan"),
    ("prop-value-email", [event(props={"plan": "bob@example.com"})], "$.records[0].props[...]"),
    (
        "visit-bad-label",
        [{"kind": "visit", "hour": H, "route": "/", "duration": "7s", "pages": "1", "n": 1}],
        "$.records[0].duration",
    ),
    (
        "bot-unknown-category",
        [{"kind": "bot", "hour": H, "category": "googlebot", "n": 1}],
        "$.records[0].category",
    ),
    (
        "bot-category-carrying-a-user-agent",
        [{"kind": "bot", "hour": H, "category": "Mozilla/5.0 (X11)", "n": 1}],
        "$.records[0].category",
    ),
    (
        "bad-record-after-good",
        [pageview(), pageview(route="/x"), pageview(route="/u/x@y.org")],
        "$.records[2].route",
    ),
]


@pytest.mark.parametrize(
    ("records", "path"), [pytest.param(r, p, id=i) for i, r, p in REJECTED_RECORDS]
)
def test_rejected_batch_names_the_field_and_stores_nothing(
    shared_server: CollectorProcess, records: list[dict[str, Any]], path: str
) -> None:
    before = sqlite_snapshot(shared_server.db_path)
    response = post(shared_server, batch_body(records))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["path"] == path
    assert body["error"]
    assert sqlite_snapshot(shared_server.db_path) == before


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        pytest.param({"user_id": "u-1"}, "$.user_id", id="unknown-top-level"),
        pytest.param({"batch_id": "not-hex"}, "$.batch_id", id="bad-batch-id"),
        pytest.param({"visits": "cookies"}, "$.visits", id="bad-visits-mode"),
    ],
)
def test_rejected_envelope(
    shared_server: CollectorProcess, extra: dict[str, Any], path: str
) -> None:
    before = sqlite_snapshot(shared_server.db_path)
    body = msgspec.json.decode(batch_body([pageview()]))
    body.update(extra)
    response = post(shared_server, msgspec.json.encode(body))
    assert response.status_code == 422
    assert response.json()["path"] == path
    assert sqlite_snapshot(shared_server.db_path) == before


def test_too_many_records(shared_server: CollectorProcess) -> None:
    before = sqlite_snapshot(shared_server.db_path)
    record = {"kind": "bot", "hour": current_hour(), "n": 1}
    response = post(
        shared_server,
        gzip.compress(batch_body([record] * (wire.MAX_RECORDS + 1))),
        {**auth(), "Content-Encoding": "gzip"},
    )
    assert response.status_code == 422
    assert response.json()["path"] == "$.records"
    assert sqlite_snapshot(shared_server.db_path) == before


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        pytest.param(b"{not json", None, 400, id="malformed-json"),
        pytest.param(b"", None, 400, id="empty-body"),
        pytest.param(b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, 400, id="bad-gzip"),
        pytest.param(
            gzip.compress(b'{"batch_id": "')[:-8],
            {"Content-Encoding": "gzip"},
            400,
            id="truncated-gzip",
        ),
        pytest.param(b"{}", {"Content-Type": "text/plain"}, 415, id="not-json"),
        pytest.param(b"{}", {"Content-Type": "application/x-www-form-urlencoded"}, 415, id="form"),
        pytest.param(b"{}", {"Content-Encoding": "br"}, 415, id="brotli"),
        pytest.param(b"x" * (wire.MAX_BODY_BYTES + 1), None, 413, id="too-large"),
        pytest.param(
            gzip.compress(b" " * (8 * wire.MAX_BODY_BYTES)),
            {"Content-Encoding": "gzip"},
            413,
            id="gzip-bomb",
        ),
    ],
)
def test_bad_bodies(
    shared_server: CollectorProcess, body: bytes, headers: dict[str, str] | None, status: int
) -> None:
    before = sqlite_snapshot(shared_server.db_path)
    response = post(shared_server, body, {**auth(), **(headers or {})})
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert sqlite_snapshot(shared_server.db_path) == before


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer hcw_wrong"}, id="wrong"),
        pytest.param({"Authorization": f"Bearer {READ_TOKEN}"}, id="read-token-cannot-write"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-auth"),
    ],
)
def test_unauthorized(shared_server: CollectorProcess, headers: dict[str, str]) -> None:
    before = sqlite_snapshot(shared_server.db_path)
    response = post(
        shared_server, batch_body([pageview()]), {"Content-Type": "application/json", **headers}
    )
    assert response.status_code == 401
    assert sqlite_snapshot(shared_server.db_path) == before


def test_accept_gzip_and_duplicate(shared_server: CollectorProcess) -> None:
    before_total, before_batches = sqlite_snapshot(shared_server.db_path)
    batch_id = secrets.token_hex(16)
    body = gzip.compress(batch_body([pageview(n=3), request_record(n=4)], batch_id=batch_id))
    headers = {**auth(), "Content-Encoding": "gzip"}
    first = post(shared_server, body, headers)
    assert first.status_code == 202
    assert first.json() == {"accepted": 2}
    assert sqlite_snapshot(shared_server.db_path) == (before_total + 7, before_batches + 1)
    again = post(shared_server, body, headers)
    assert again.status_code == 200
    assert again.json() == {"duplicate": True}
    assert sqlite_snapshot(shared_server.db_path) == (before_total + 7, before_batches + 1)


def test_methods_and_unknown_paths(shared_server: CollectorProcess) -> None:
    assert httpx.get(f"{shared_server.url}/v1/ingest").status_code == 405
    assert httpx.get(f"{shared_server.url}/nope/alice@example.com?x=1").status_code == 404
    log = shared_server.log_text()
    assert "alice@example.com" not in log
    assert "127.0.0.1" not in log.replace("http://127.0.0.1", "")


def test_no_bad_input_causes_5xx(shared_server: CollectorProcess) -> None:
    junk = [
        b"null",
        b"[]",
        b"123",
        b'"x"',
        b'{"records": null}',
        b'{"batch_id": 5}',
        b'{"batch_id":"' + b"a" * 32 + b'","sender":"x","sender_version":"1","records":[null]}',
        b"\xff\xfe\x00",
        b'{"a":' * 5000,
        '{"é": "\u2028"}'.encode(),
    ]
    for body in junk:
        response = post(shared_server, body)
        assert 400 <= response.status_code < 500, (body[:40], response.status_code)


def test_errors_never_echo_submitted_values(shared_server: CollectorProcess) -> None:
    canaries = {
        "latency": "198.51.100.77",
        "status": "Mozilla/5.0 CanaryAgent",
        "method": "hcw_secret-token-canary",
    }
    for field, canary in canaries.items():
        record = request_record()
        record[field] = canary
        response = post(shared_server, batch_body([record]))
        assert response.status_code == 422
        assert response.json()["path"] == f"$.records[0].{field}"
        assert canary not in response.text
    kind = post(shared_server, batch_body([{"kind": "alice@example.com", "hour": 0, "n": 1}]))
    assert kind.status_code == 422
    assert "alice@example.com" not in kind.text


@pytest.mark.parametrize(
    ("record", "field"),
    [
        pytest.param(
            pageview(referrer="alice.example.com\n"), "referrer", id="newline-after-referrer"
        ),
        pytest.param(pageview(utm_source="x\n"), "utm_source", id="newline-after-slug"),
        pytest.param(pageview(route="/a\u0000b"), "route", id="nul-in-route"),
        pytest.param(event(name="signup\n"), "name", id="newline-after-event-name"),
        # Python's json.dumps escapes non-ASCII text by default: named, and told how.
        pytest.param(pageview(route="/\u00fcber-uns"), "route", id="escaped-non-ascii"),
    ],
)
def test_json_escapes_are_refused_naming_the_field(
    shared_server: CollectorProcess, record: dict[str, Any], field: str
) -> None:
    before = sqlite_snapshot(shared_server.db_path)
    good = pageview(route="/")
    body = json.dumps({**json.loads(batch_body([good])), "records": [good, record]})
    response = post(shared_server, body.encode())
    assert response.status_code == 422
    assert "escape" in response.json()["error"]
    assert response.json()["path"] == f"$.records[1].{field}"
    assert sqlite_snapshot(shared_server.db_path) == before


def test_a_refused_escape_never_echoes_a_key_the_sender_chose(
    shared_server: CollectorProcess,
) -> None:
    # The path names schema fields; a property key is the sender's text, and may be the
    # very identifier that must not travel (nor come back).
    before = sqlite_snapshot(shared_server.db_path)
    record = event(props={"alice@example.com": "free\n"})
    response = post(shared_server, batch_body([pageview(route="/"), record]))
    assert response.status_code == 422
    assert response.json()["path"] == "$.records[1].props[...]"
    assert "alice" not in response.text
    assert sqlite_snapshot(shared_server.db_path) == before


def test_unknown_field_names_that_look_like_identifiers_are_not_echoed(
    shared_server: CollectorProcess,
) -> None:
    record = pageview()
    record["email_alice@example.com"] = 1
    response = post(shared_server, batch_body([record]))
    assert response.status_code == 422
    assert "alice@example.com" not in response.text
    assert response.json()["path"] == "$.records[0]"


def test_records_older_than_remembered_batch_ids_are_refused(
    shared_server: CollectorProcess,
) -> None:
    # hourly_days is 30, but batch ids are remembered 7 days: an 8-day-old retry could
    # no longer be recognised, so it is refused rather than risk counting twice.
    response = post(shared_server, batch_body([pageview(hour=current_hour() - 8 * 86400)]))
    assert response.status_code == 422
    assert response.json()["path"] == "$.records[0].hour"
    fresh = post(shared_server, batch_body([pageview(hour=current_hour() - 6 * 86400)]))
    assert fresh.status_code == 202
