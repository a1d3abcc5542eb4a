"""``/openapi.json``, generated from the same msgspec types the collector decodes with."""

from __future__ import annotations

from functools import cache
from typing import get_args

import msgspec

from headcount import wire
from headcount_collector.query import METRICS, Format, Interval

__all__ = ["document"]


class IngestAccepted(msgspec.Struct):
    accepted: int


class DuplicateBatch(msgspec.Struct):
    duplicate: bool


class ErrorBody(msgspec.Struct):
    error: str
    path: str | None = None
    parameter: str | None = None


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(description: str, schema: str) -> dict[str, object]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _by_item() -> dict[str, object]:
    """A dimension some metric groups by, or ``prop:NAME`` (an event property)."""
    names = dict.fromkeys(d for _, _, dims in METRICS.values() for d in dims if d != "prop")
    return {
        "type": "string",
        "anyOf": [{"enum": list(names)}, {"pattern": "^prop:" + wire.NAME_PATTERN[1:]}],
    }


@cache
def document() -> dict[str, object]:
    (batch, accepted, duplicate, _), components = msgspec.json.schema_components(
        [wire.Batch, IngestAccepted, DuplicateBatch, ErrorBody],
        ref_template="#/components/schemas/{name}",
    )
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    errors: dict[str, object] = {
        "400": _json_response("Malformed JSON or gzip", "ErrorBody"),
        "401": _json_response("Missing or wrong token", "ErrorBody"),
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
                    "responses": _responses(
                        {
                            "202": {
                                "description": "Committed to disk",
                                "content": {"application/json": {"schema": accepted}},
                            },
                            "200": {
                                "description": "This batch_id was already applied",
                                "content": {"application/json": {"schema": duplicate}},
                            },
                            "413": _json_response("Body too large", "ErrorBody"),
                            "415": _json_response("Not JSON, or unsupported encoding", "ErrorBody"),
                            "422": _json_response(
                                "Schema violation; path names the field", "ErrorBody"
                            ),
                            "503": _json_response("Storage busy; honour Retry-After", "ErrorBody"),
                        },
                        errors,
                    ),
                }
            },
            "/v1/stats": {
                "get": {
                    "summary": "Query released (sealed, noisy) counts",
                    "security": bearer,
                    "parameters": [
                        _param("metric", {"type": "string", "enum": list(METRICS)}),
                        _param("from", {"type": "string"}),
                        _param("to", {"type": "string"}),
                        _param(
                            "interval",
                            {"type": "string", "enum": list(get_args(Interval))},
                        ),
                        _param("by", {"type": "array", "items": _by_item()}),
                        _param("filter", {"type": "array", "items": {"type": "string"}}),
                        _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                        _param("format", {"type": "string", "enum": list(get_args(Format))}),
                    ],
                    "responses": _responses(
                        {
                            "200": {
                                "description": "Rows and totals, each a sum of sealed noisy "
                                "cells with its 95 % error, and the privacy parameters"
                            }
                        },
                        errors,
                    ),
                }
            },
            "/v1/schema": {"get": {"responses": {"200": {"description": "The wire schema"}}}},
            "/healthz": {"get": {"responses": {"200": {"description": "Alive"}}}},
            "/privacy": {"get": {"responses": {"200": {"description": "Privacy page (HTML)"}}}},
            "/privacy/{site}": {
                "get": {
                    "parameters": [
                        {
                            "name": "site",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "One site's privacy page (HTML)"},
                        "404": {"description": "No such site"},
                    },
                }
            },
        },
    }


def _param(name: str, schema: dict[str, object]) -> dict[str, object]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _responses(*parts: dict[str, object]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for part in parts:
        merged.update(part)
    return merged
