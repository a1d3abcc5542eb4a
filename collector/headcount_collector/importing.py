"""What an access-log import needs from the collector, behind the site's write token.

``GET /v1/import/state`` tells the importer which hours it may fill: those before the
site's first stored hour, inside hourly retention, and (noised sites) outside ``closed``.
``POST /v1/import/ingest`` takes the import's batches: the wire schema of
``/v1/ingest``, with hours as old as the site keeps them (the batch ids are remembered
as long). ``POST /v1/import/seal`` with ``{"from": hour, "until": hour}`` then releases
what the import filled, with the same noise and thresholds as any bucket:

- hours and local days before the site's *origin* (where sealing began when the site
  was new: nothing there was ever released) are released once each. Every bucket of the
  range is claimed, empty or not, and a claimed bucket is closed for good;
- from the origin on, it runs the collector's ordinary sealing for the buckets that end
  by ``until`` (never past the current hour), so the hours inside the grace window are
  released at once instead of later.

Which buckets can take an import is decided by the clock and the ranges asked for,
never by whether anyone visited: an earlier design that let a bucket sealed while empty
take an import told a write-token holder which hours had a visitor.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Final

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from headcount_collector.config import Site, SiteRegistry
from headcount_collector.errors import StoreUnavailable, split_validation_error
from headcount_collector.ingest import oldest_accepted
from headcount_collector.release.sealing import NoisePool, begin_sealing, seal_due, seal_history
from headcount_collector.stores.base import Store
from headcount_collector.timeutil import floor_hour

__all__ = ["import_routes"]

STATE_PATH: Final = "/v1/import/state"
INGEST_PATH: Final = "/v1/import/ingest"
SEAL_PATH: Final = "/v1/import/seal"
_LAST_BUCKET: Final = 2**62
_MAX_SEAL_ROUNDS: Final = 10_000
_encode = msgspec.json.Encoder().encode


class _SealRequest(msgspec.Struct, forbid_unknown_fields=True, rename={"start": "from"}):
    until: int
    start: int | None = None


_SEAL_DECODER: Final = msgspec.json.Decoder(_SealRequest)
# {"until": ..., "from": ...} with room to spare; the endpoint reads no more.
_MAX_SEAL_BODY: Final = 1024
_SEAL_SHAPE: Final = 'expected {"until": hour, "from": hour (optional)}'


class _SealBodyTooLarge(Exception):
    pass


async def _seal_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > _MAX_SEAL_BODY):
        raise _SealBodyTooLarge
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_SEAL_BODY:
            raise _SealBodyTooLarge
        parts.append(chunk)
    return b"".join(parts)


def _json(payload: object, status: int = 200) -> Response:
    return Response(_encode(payload), status_code=status, media_type="application/json")


def import_routes(
    registry: SiteRegistry,
    store: Store,
    clock: Callable[[], float],
    dedupe_seconds: int,
    pool: NoisePool,
    history_ingest: ASGIApp,
) -> list[Route]:
    """The import routes, for the site's write token; ``history_ingest`` is the ingest
    endpoint for import batches."""

    def site_of(request: Request) -> Site | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not hmac.compare_digest(scheme.lower(), "bearer") or not token.strip():
            return None
        return registry.by_write_token(token.strip())

    def unauthorized() -> Response:
        return _json({"error": "missing or wrong write token"}, 401)

    def closed_hours(
        site: Site, watermarks: dict[str, int], origins: dict[str, int], oldest: int
    ) -> list[list[int]]:
        """[start, end) hour ranges an import may not fill, merged: the hours before the
        origin an import already released; the hours before the origin in the origin's
        own day once the clock has sealed that day (they would never reach it); and from
        the origin (or, when it is unknown, from ``oldest``) every hour the clock has
        sealed. Which sealed hours held counts is never told or used: whether an hour
        could take an import would otherwise say whether anyone visited in it."""
        origin, daily_origin = origins.get("h"), origins.get("d")
        ranges: list[list[int]] = []
        if origin is not None:
            ranges += [[h, h + 3600] for h in store.claimed_buckets(site.id, "h", oldest, origin)]
            if daily_origin is not None:
                ranges.append([daily_origin, min(watermarks["d"], origin)])
        ranges.append([oldest if origin is None else origin, watermarks["h"]])
        merged: list[list[int]] = []
        for low, high in sorted([max(low, oldest), high] for low, high in ranges):
            if high <= low:
                continue
            if merged and low <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        return merged

    def state_of(site: Site) -> dict[str, int | list[list[int]] | None]:
        now = clock()
        stored = store.data_buckets(site.id, "h", 0, _LAST_BUCKET)
        # Ingest's oldest hour for an import, rounded up to a whole hour.
        oldest = -(-int(oldest_accepted(site, int(now), dedupe_seconds, history=True)) // 3600)
        oldest *= 3600
        state: dict[str, int | list[list[int]] | None] = {
            "first_hour": stored[0] if stored else None,
            "last_hour": stored[-1] if stored else None,
            "sealed_until": None,
            "origin": None,
            "closed": [],
            "oldest_hour": oldest,
            "newest_hour": floor_hour(now),
            # The first hour whose live counts may still be on their way: the SDK sends
            # an hour's counts during the next one (send_schedule "hourly"), within the
            # grace the collector gives before sealing. A history import stops before
            # it, or the live counts that arrive later would be added to the imported.
            "arriving_from": floor_hour(now - 3600 - site.policy.seal_grace_seconds) + 3600,
        }
        if site.policy.noise:
            watermarks = begin_sealing(store, site, now)
            origins = store.seal_origins(site.id)
            state["sealed_until"] = watermarks["h"]
            state["origin"] = origins.get("h")
            state["closed"] = closed_hours(site, watermarks, origins, oldest)
        return state

    async def state(request: Request) -> Response:
        site = site_of(request)
        if site is None:
            return unauthorized()
        try:
            return _json(await asyncio.to_thread(state_of, site))
        except StoreUnavailable:
            return _json({"error": "storage is temporarily unavailable; retry later"}, 503)

    def seal_until(site: Site, start: int | None, until: int) -> int | None:
        if not site.policy.noise:
            return None
        now = clock()
        if start is not None:
            seal_history(store, site, start, until, now, pool)
        # seal_due seals what has ended `grace` seconds before the instant it is given.
        instant = until + site.policy.seal_grace_seconds
        for _ in range(_MAX_SEAL_ROUNDS):
            report = seal_due(store, site, instant, pool)
            if not report.behind:
                break
        return store.seal_state(site.id).get("h")

    async def seal(request: Request) -> Response:
        site = site_of(request)
        if site is None:
            return unauthorized()
        try:
            wanted = _SEAL_DECODER.decode(await _seal_body(request))
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to answer
        except _SealBodyTooLarge:
            return _json({"error": f"body larger than {_MAX_SEAL_BODY} bytes; {_SEAL_SHAPE}"}, 413)
        except msgspec.ValidationError as exc:
            # Never the submitted text back: a field name may be what is being refused.
            problem, path = split_validation_error(str(exc))
            return _json({"error": f"{problem}; {_SEAL_SHAPE}", "path": path}, 422)
        except msgspec.DecodeError:
            return _json({"error": f"body is not valid JSON; {_SEAL_SHAPE}", "path": "$"}, 422)
        if wanted.until % 3600 or wanted.until < 0:
            return _json({"error": "until must be the start of an hour, in Unix seconds"}, 422)
        if wanted.start is not None and (wanted.start % 3600 or wanted.start < 0):
            return _json({"error": "from must be the start of an hour, in Unix seconds"}, 422)
        until = min(wanted.until, floor_hour(clock()))
        try:
            sealed = await asyncio.to_thread(seal_until, site, wanted.start, until)
        except StoreUnavailable:
            return _json({"error": "storage is temporarily unavailable; retry later"}, 503)
        return _json({"sealed_until": sealed})

    return [
        Route(STATE_PATH, state, methods=["GET"]),
        Route(INGEST_PATH, history_ingest, methods=["POST"]),
        Route(SEAL_PATH, seal, methods=["POST"]),
    ]
