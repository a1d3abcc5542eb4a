"""Property-based fuzzing of POST /v1/ingest on the in-process app.

Whatever arrives: never a 5xx; a rejected batch stores nothing (no counter, no batch id);
every rejection names the offending field (``path``) or the reason (``error``); an
accepted batch stores exactly the counts it carried.
"""

from __future__ import annotations

import gzip
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from headcount import wire
from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites
from headcount_collector.stores.sqlite import SQLiteStore
from tests.conftest import WRITE_TOKEN, site_file_text
from tests.faults.conftest import stored_everything

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEADERS = {"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"}


class Target:
    def __init__(self, client: TestClient, db_path: Path) -> None:
        self.client = client
        self.db_path = db_path

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """Status and JSON answer, after checking the properties every answer must have."""
        before = stored_everything(self.db_path)
        response = self.client.post(wire.INGEST_PATH, content=body, headers=headers or HEADERS)
        after = stored_everything(self.db_path)
        status = response.status_code
        event(f"HTTP {status}")
        assert status < 500, (status, response.text, body[:300])
        payload = response.json()
        if status >= 400:
            assert after == before, "a rejected batch must store nothing"
            assert isinstance(payload.get("error"), str)
            assert payload["error"]
            if status == 422:
                assert isinstance(payload.get("path"), str)
                assert payload["path"].startswith("$")
        elif status == 200:
            assert payload == {"duplicate": True}
            assert after == before
        else:
            assert status == 202
            assert after[1] == before[1] + 1
            payload["stored"] = after[0] - before[0]
        return status, payload


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("fuzz")
    sites = directory / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    store = SQLiteStore(directory / "fuzz.sqlite3")
    app = create_app(Settings(config_path=str(sites)), store, load_sites(sites))
    with TestClient(app) as client:
        yield Target(client, store.path)
    store.close()


def hour() -> int:
    return int(time.time()) // 3600 * 3600


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)

# Values a careless or hostile sender might put in a route: templates and raw paths.
routes = st.sampled_from(
    [
        "/",
        "/users/{id}",
        "(other)",
        "(unmatched)",
        "/users/12345",
        "/u/550e8400-e29b-41d4-a716-446655440000",
        "/mail/jane@example.org",
        "/ip/192.168.0.7",
        "/search?q=x",
        "/a/../b",
        "/tok/aB3dE5fG7hJ9kL1mN",
        "relative",
        "/" + "x" * 300,
        "/caf%C3%A9",
        "/ünïcode",
        "/nul\x00byte",
    ]
) | st.text(max_size=40)
referrers = st.sampled_from(
    ["(direct)", "(internal)", "(other)", "google.com", "https://google.com/x", "10.0.0.1", ""]
) | st.text(max_size=20)
counts = st.sampled_from([1, 7, 0, -1, 10**9, 10**9 + 1, 2**63]) | st.integers(1, 100)
hours = st.sampled_from(["now", "future", "old", "odd", "negative", "string"])


def hour_value(choice: str) -> object:
    now = hour()
    return {
        "now": now,
        "future": now + 3 * 3600,
        "old": now - 400 * 86400,
        "odd": now + 17,
        "negative": -3600,
        "string": str(now),
    }[choice]


VALID_ROUTES = st.sampled_from(["/", "/users/{id}", "/blog/{slug}", "(other)", "(unmatched)"])


@st.composite
def records(draw: st.DrawFn, clean: bool) -> dict[str, Any]:
    """A record a correct SDK could send (``clean``), else one that may be hostile."""

    def pick(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
        return draw(valid if clean else valid | hostile)

    kinds = ["pageview", "request", "event", "bot", "visit"]
    kind = pick(st.sampled_from(kinds), st.just("nope"))
    record: dict[str, Any] = {
        "kind": kind,
        "hour": hour_value(pick(st.just("now"), hours)),
        "n": pick(st.integers(1, 100), counts),
    }
    if kind in ("pageview", "request", "event", "visit"):
        record["route"] = pick(VALID_ROUTES, routes)
    if kind == "pageview":
        record["referrer"] = pick(st.sampled_from(["(direct)", "google.com"]), referrers)
        record["entry"] = pick(st.booleans(), st.sampled_from([1, "yes"]))
        if draw(st.booleans()):
            record["utm_source"] = pick(
                st.just("newsletter"), st.sampled_from(["Bad Slug", "x" * 70])
            )
    elif kind == "request":
        record["method"] = pick(st.sampled_from(wire.METHODS), st.sampled_from(["get", "TRACE"]))
        record["status"] = pick(
            st.sampled_from(wire.STATUS_CLASSES), st.sampled_from(["200", "6xx"])
        )
        record["latency"] = pick(
            st.sampled_from(wire.LATENCY_LABELS), st.sampled_from(["12ms", ""])
        )
    elif kind == "event":
        record["name"] = pick(
            st.sampled_from(["signup", "download"]), st.sampled_from(["undeclared", "Bad"])
        )
        declared: dict[object, list[dict[str, str]]] = {
            "signup": [{}, {"plan": "pro"}],
            "download": [{}],
        }
        props = declared.get(record["name"], [{}])
        record["props"] = pick(
            st.sampled_from(props), st.sampled_from([{"plan": "enterprise"}, {"other": "x"}])
        )
    elif kind == "visit":
        record["duration"] = pick(st.sampled_from(wire.DURATION_LABELS), st.just("5s"))
        record["pages"] = pick(st.sampled_from(wire.PAGES_LABELS), st.just("0"))
    if not clean:
        # Sometimes an extra field, or one missing.
        if draw(st.integers(0, 4)) == 0:
            record[draw(st.sampled_from(["ip", "user_agent", "path", "extra"]))] = draw(json_values)
        if draw(st.integers(0, 4)) == 0 and len(record) > 1:
            del record[draw(st.sampled_from(sorted(record)))]
    return record


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    # Half the batches are ones a correct SDK could send: they must be stored exactly.
    clean = draw(st.booleans())
    batch: dict[str, Any] = {
        "batch_id": secrets.token_hex(16),
        "sender": "fuzz",
        "sender_version": "1.0",
        "records": draw(st.lists(records(clean), max_size=6)),
    }
    if clean:
        return batch
    mutation = draw(st.integers(0, 9))
    if mutation == 0:
        batch[draw(st.sampled_from(sorted(batch)))] = draw(json_values)
    elif mutation == 1:
        batch["batch_id"] = draw(st.sampled_from(["", "0" * 31, "G" * 32, "A" * 32]))
    elif mutation == 2:
        batch["sender"] = draw(st.text(max_size=80))
    elif mutation == 3:
        batch["visits"] = draw(st.sampled_from(["off", "memory", "redis", "all", 1]))
    return batch


def expected_total(batch: dict[str, Any]) -> int:
    return sum(int(r["n"]) for r in batch["records"])


@FUZZ
@given(batch=batches())
def test_structured_batches(target: Target, batch: dict[str, Any]) -> None:
    status, payload = target.post(msgspec.json.encode(batch))
    if status == 202:
        assert payload["accepted"] == len(batch["records"])
        assert payload["stored"] == expected_total(batch)


@FUZZ
@given(body=st.binary(max_size=3000))
def test_arbitrary_bytes(target: Target, body: bytes) -> None:
    status, _ = target.post(body)
    assert status in (400, 422)


@FUZZ
@given(value=json_values)
def test_arbitrary_json(target: Target, value: object) -> None:
    status, _ = target.post(msgspec.json.encode(value))
    assert status in (400, 422)


@FUZZ
@given(batch=batches(), cut=st.just(0) | st.integers(1, 200), compress=st.booleans())
def test_gzip_bodies_whole_truncated_and_garbled(
    target: Target, batch: dict[str, Any], cut: int, compress: bool
) -> None:
    raw = msgspec.json.encode(batch)
    body = gzip.compress(raw) if compress else raw
    body = body[: len(body) - cut] if cut else body
    status, payload = target.post(body, {**HEADERS, "Content-Encoding": "gzip"})
    if status == 202:
        assert payload["stored"] == expected_total(batch)


@FUZZ
@given(
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; x=y"])
    | st.text(max_size=30),
    encoding=st.sampled_from(["gzip", "identity", "br", "gzip, gzip", ""]) | st.text(max_size=10),
    length=st.sampled_from([None, "abc", "-1", "0", "99999999999999999999"]),
)
def test_hostile_headers(
    target: Target, content_type: str, encoding: str, length: str | None
) -> None:
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    for name, value in (("Content-Type", content_type), ("Content-Encoding", encoding)):
        if value.isprintable() and value.isascii():
            headers[name] = value
    if length is not None:
        headers["Content-Length"] = length
    body = msgspec.json.encode({"batch_id": secrets.token_hex(16), "records": []})
    target.post(body, headers)
