"""/v1/schema, /privacy and /openapi.json say exactly what the validator enforces."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import msgspec
from starlette.testclient import TestClient

from headcount import wire
from tests.collector.conftest import auth, batch_body, current_hour, read_auth
from tests.conftest import SHOP_READ_TOKEN, WRITE_TOKEN


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def test_schema_lists_every_kind_field_and_label(client: TestClient) -> None:
    body = client.get("/v1/schema").json()
    kinds = body["wire"]["record_kinds"]
    for record_type in wire.RECORD_TYPES:
        info = msgspec.inspect.type_info(record_type)
        assert isinstance(info, msgspec.inspect.StructType)
        assert [f["name"] for f in kinds[info.tag]["fields"]] == [
            f.encode_name for f in info.fields
        ]
    labels = body["wire"]["labels"]
    assert labels["latency"] == list(wire.LATENCY_LABELS)
    assert labels["duration"] == list(wire.DURATION_LABELS)
    assert labels["pages"] == list(wire.PAGES_LABELS)
    assert "site" not in body


def expected_type(t: msgspec.inspect.Type) -> str:
    """What /v1/schema must say about a field's type, derived from the wire type itself."""
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    if isinstance(t, msgspec.inspect.UnionType):
        return " or ".join(expected_type(x) for x in t.types)
    if isinstance(t, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(map(str, t.values))
    if isinstance(t, msgspec.inspect.BoolType):
        return "boolean"
    if isinstance(t, msgspec.inspect.NoneType):
        return "null"
    if isinstance(t, msgspec.inspect.IntType):
        if t.multiple_of == 3600:
            return "UTC hour (Unix seconds, multiple of 3600)"
        return (
            "integer"
            + (f" >= {t.ge}" if t.ge is not None else "")
            + (f" <= {t.le}" if t.le is not None else "")
        )
    if isinstance(t, msgspec.inspect.StrType):
        return (
            "string"
            + (f" matching {t.pattern}" if t.pattern else "")
            + (f", at most {t.max_length} characters" if t.max_length is not None else "")
        )
    if isinstance(t, msgspec.inspect.DictType):
        return f"object of {expected_type(t.key_type)} to {expected_type(t.value_type)}"
    raise AssertionError(f"the schema test does not know {t!r}: describe it in wire.py")


def test_schema_describes_every_field_type_as_ingest_checks_it(client: TestClient) -> None:
    kinds = client.get("/v1/schema").json()["wire"]["record_kinds"]
    for record_type in wire.RECORD_TYPES:
        info = msgspec.inspect.type_info(record_type)
        assert isinstance(info, msgspec.inspect.StructType)
        described = {f["name"]: f["type"] for f in kinds[info.tag]["fields"]}
        for field in info.fields:
            assert described[field.encode_name] == expected_type(field.type), field.name
    every_type = " ".join(f["type"] for kind in kinds.values() for f in kind["fields"])
    # No msgspec class name leaks through as a "type" (there were 13 "Metadata").
    for internal in ("Metadata", "StrType", "IntType", "Type("):
        assert internal not in every_type


def test_schema_labels_are_exactly_what_ingest_accepts(client: TestClient) -> None:
    body = client.get("/v1/schema").json()
    hour = current_hour()
    for label in body["wire"]["labels"]["latency"]:
        record = {
            "kind": "request",
            "hour": hour,
            "route": "/",
            "method": "GET",
            "status": "2xx",
            "latency": label,
            "n": 1,
        }
        assert (
            client.post("/v1/ingest", content=batch_body([record]), headers=auth()).status_code
            == 202
        )
    for label in body["wire"]["labels"]["duration"]:
        for pages in body["wire"]["labels"]["pages"]:
            record = {
                "kind": "visit",
                "hour": hour,
                "route": "/",
                "duration": label,
                "pages": pages,
                "n": 1,
            }
            assert (
                client.post("/v1/ingest", content=batch_body([record]), headers=auth()).status_code
                == 202
            )
    bad = {
        "kind": "request",
        "hour": hour,
        "route": "/",
        "method": "GET",
        "status": "2xx",
        "latency": "13ms",
        "n": 1,
    }
    assert client.post("/v1/ingest", content=batch_body([bad]), headers=auth()).status_code == 422


def test_schema_with_read_token_shows_the_sites_declarations(client: TestClient) -> None:
    body = client.get("/v1/schema", headers=read_auth()).json()
    assert body["site"]["id"] == "blog"
    assert body["site"]["k"] == 5
    assert body["site"]["retention"] == {"hourly_days": 30, "keep_days": 760}
    assert {"name": "signup", "props": {"plan": ["free", "pro"]}} in body["site"]["events"]
    shop = client.get("/v1/schema", headers=read_auth(SHOP_READ_TOKEN)).json()
    assert shop["site"]["id"] == "shop"
    assert shop["site"]["suppression"] is False
    assert client.get("/v1/schema", headers=read_auth(WRITE_TOKEN)).status_code == 401


def _page_text(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parser = _Text()
    parser.feed(response.text)
    assert parser.scripts == 0
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def test_collector_wide_privacy_page_names_no_site(client: TestClient) -> None:
    text = _page_text(client, "/privacy")
    for label in (*wire.LATENCY_LABELS, *wire.DURATION_LABELS, *wire.PAGES_LABELS):
        assert label in text
    for kind in ("pageview", "request", "event", "bot", "visit"):
        assert kind in text
    assert "IP addresses" in text
    assert "Unique visitors are deliberately not offered" in text
    # An unauthenticated stranger learns nothing about which sites this collector serves.
    for site_detail in ("blog", "shop", "signup", "Europe/Berlin"):
        assert site_detail not in text


def test_each_site_page_is_generated_from_its_live_config(client: TestClient) -> None:
    text = _page_text(client, "/privacy/blog")
    assert "kept for 30 days" in text
    assert "deleted after 760 days" in text
    assert "signup: plan = free, pro" in text
    assert "shop" not in text
    # Both test sites opted out of noise, and their pages say so plainly.
    assert "opted out of noise: its numbers are exact" in text
    assert "A count below 5 is withheld" in text
    assert "A count below 1" in _page_text(client, "/privacy/shop")
    assert client.get("/privacy/nosuchsite").status_code == 404


def test_openapi_is_generated_from_the_wire_types(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    schemas = spec["components"]["schemas"]
    assert set(schemas["Pageview"]["properties"]) == {
        f.encode_name for f in msgspec.structs.fields(wire.Pageview)
    } | {"kind"}
    assert schemas["Pageview"]["additionalProperties"] is False
    assert sorted(schemas["Request"]["properties"]["latency"]["enum"]) == sorted(
        wire.LATENCY_LABELS
    )
    ingest = spec["paths"]["/v1/ingest"]["post"]
    assert set(ingest["responses"]) >= {"200", "202", "400", "401", "413", "415", "422", "503"}


def test_declared_visits_mode_reaches_schema_and_privacy_page(client: TestClient) -> None:
    from tests.collector.conftest import pageview

    assert (
        client.get("/v1/schema", headers=read_auth()).json()["site"]["visits_modes_declared"] == []
    )
    assert "has declared its visits mode yet" in client.get("/privacy/blog").text
    response = client.post(
        "/v1/ingest", content=batch_body([pageview()], visits="memory"), headers=auth()
    )
    assert response.status_code == 202
    body = client.get("/v1/schema", headers=read_auth()).json()
    assert body["site"]["visits_modes_declared"] == ["memory"]
    page = client.get("/privacy/blog").text
    assert "<strong>memory</strong>" in page
    assert "<strong>memory</strong>" not in client.get("/privacy/shop").text
    # The other site has declared nothing.
    assert (
        client.get("/v1/schema", headers=read_auth(SHOP_READ_TOKEN)).json()["site"][
            "visits_modes_declared"
        ]
        == []
    )
