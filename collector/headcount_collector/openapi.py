"""``/openapi.json``, generated from the same msgspec types the collector decodes with."""

from __future__ import annotations

from functools import cache

import msgspec
from headcount import wire

from headcount_collector.query import METRICS

__all__ = ["document"]


class _Accepted(msgspec.Struct):
    accepted: int


class _Duplicate(msgspec.Struct):
    duplicate: bool


class _Error(msgspec.Struct):
    error: str
    path: str | None = None
    parameter: str | None = None


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(description: str, schema: str) -> dict[str, object]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


@cache
def document() -> dict[str, object]:
    (batch, accepted, duplicate, error), components = msgspec.json.schema_components(
        [wire.Batch, _Accepted, _Duplicate, _Error], ref_template="#/components/schemas/{name}"
    )
    bearer = [{"bearer": []}]
    errors = {
        "400": _json_response("Malformed JSON or gzip", "_Error"),
        "401": _json_response("Missing or wrong token", "_Error"),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Headcount collector", "version": str(wire.SCHEMA_VERSION)},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            wire.INGEST_PATH: {
                "post": {
                    "summary": "Submit one batch of coarse counts",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": batch}},
                    },
                    "responses": {
                        "202": {
                            "description": "Committed to disk",
                            "content": {"application/json": {"schema": accepted}},
                        },
                        "200": {
                            "description": "This batch_id was already applied",
                            "content": {"application/json": {"schema": duplicate}},
                        },
                        **errors,
                        "413": _json_response("Body too large", "_Error"),
                        "415": _json_response("Not JSON, or unsupported encoding", "_Error"),
                        "422": _json_response("Schema violation; path names the field", "_Error"),
                        "503": _json_response("Storage busy; honour Retry-After", "_Error"),
                    },
                }
            },
            "/v1/stats": {
                "get": {
                    "summary": "Query suppressed counters",
                    "security": bearer,
                    "parameters": [
                        _param("metric", {"type": "string", "enum": list(METRICS)}),
                        _param("from", {"type": "string"}),
                        _param("to", {"type": "string"}),
                        _param(
                            "interval",
                            {"type": "string", "enum": ["hour", "day", "week", "month", "total"]},
                        ),
                        _param("by", {"type": "array", "items": {"type": "string"}}),
                        _param("filter", {"type": "array", "items": {"type": "string"}}),
                        _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                        _param("format", {"type": "string", "enum": ["json", "csv"]}),
                    ],
                    "responses": {
                        "200": {"description": "Rows, with k and the withheld cell count"},
                        **errors,
                    },
                }
            },
            "/v1/schema": {"get": {"responses": {"200": {"description": "The wire schema"}}}},
            "/healthz": {"get": {"responses": {"200": {"description": "Alive"}}}},
            "/privacy": {"get": {"responses": {"200": {"description": "Privacy page (HTML)"}}}},
        },
    }


def _param(name: str, schema: dict[str, object]) -> dict[str, object]:
    return {"name": name, "in": "query", "required": False, "schema": schema}
