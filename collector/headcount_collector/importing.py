"""What an access-log import needs from the collector, behind the site's write token.

``GET /v1/import/state`` tells the importer which hours it may fill: those before the
site's first stored hour, no older than ingest accepts, and (noised sites) outside
``closed``: every hour the clock has sealed, whether or not it held counts.
``POST /v1/import/seal`` with ``{"until": hour}`` (and the import's first hour as
``from``) runs the collector's own sealing for the site's buckets that end by ``until``
(never past the current hour), so an import is released at once instead of waiting for
the grace window. It does not change how a bucket is sealed: same watermark, same noise,
same thresholds.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headcount_collector.config import Site, SiteRegistry
from headcount_collector.errors import StoreUnavailable
from headcount_collector.release.sealing import NoisePool, seal_due
from headcount_collector.stores.base import Store
from headcount_collector.timeutil import floor_hour

__all__ = ["import_routes"]

STATE_PATH: Final = "/v1/import/state"
SEAL_PATH: Final = "/v1/import/seal"
_LAST_BUCKET: Final = 2**62
_MAX_SEAL_ROUNDS: Final = 10_000
_encode = msgspec.json.Encoder().encode


class _SealRequest(msgspec.Struct, forbid_unknown_fields=True, rename={"start": "from"}):
    until: int
    start: int | None = None


def _json(payload: object, status: int = 200) -> Response:
    return Response(_encode(payload), status_code=status, media_type="application/json")


def import_routes(
    registry: SiteRegistry,
    store: Store,
    clock: Callable[[], float],
    dedupe_seconds: int,
    pool: NoisePool,
) -> list[Route]:
    """The two import routes, for the site's write token."""

    def site_of(request: Request) -> Site | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not hmac.compare_digest(scheme.lower(), "bearer") or not token.strip():
            return None
        return registry.by_write_token(token.strip())

    def unauthorized() -> Response:
        return _json({"error": "missing or wrong write token"}, 401)

    def closed_hours(sealed: int | None, oldest: int) -> list[list[int]]:
        """[start, end) hour ranges an import may not fill: everything the clock has
        sealed. Which sealed hours held counts is never told or used: whether an hour
        could take an import would otherwise say whether anyone visited in it."""
        return [[oldest, sealed]] if sealed is not None and sealed > oldest else []

    def state_of(site: Site) -> dict[str, int | list[list[int]] | None]:
        now = clock()
        stored = store.data_buckets(site.id, "h", 0, _LAST_BUCKET)
        sealed = store.seal_state(site.id).get("h") if site.policy.noise else None
        # The oldest hour ingest accepts (see ingest.validate_batch).
        oldest = -(-int(now - min(site.hourly_seconds, dedupe_seconds - 3600)) // 3600) * 3600
        newest = floor_hour(now)
        return {
            "first_hour": stored[0] if stored else None,
            "last_hour": stored[-1] if stored else None,
            "sealed_until": sealed,
            "closed": closed_hours(sealed, oldest) if site.policy.noise else [],
            "oldest_hour": oldest,
            "newest_hour": newest,
        }

    async def state(request: Request) -> Response:
        site = site_of(request)
        if site is None:
            return unauthorized()
        try:
            return _json(await asyncio.to_thread(state_of, site))
        except StoreUnavailable:
            return _json({"error": "storage is temporarily unavailable; retry later"}, 503)

    def seal_until(site: Site, until: int) -> int | None:
        if not site.policy.noise:
            return None
        # seal_due seals what has ended `grace` seconds before the instant it is given.
        instant = until + site.policy.seal_grace_seconds
        for _ in range(_MAX_SEAL_ROUNDS):
            report = seal_due(store, site, instant, pool)
            if not report.behind:
                break
        # The import's first hour (`from`) releases nothing below the watermark: which
        # sealed buckets could take an import must be decided by the clock alone. Deciding
        # by whether a bucket held counts (an earlier design) told a write-token holder
        # whether anyone visited.
        return store.seal_state(site.id).get("h")

    async def seal(request: Request) -> Response:
        site = site_of(request)
        if site is None:
            return unauthorized()
        try:
            wanted = msgspec.json.decode(await request.body(), type=_SealRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _json({"error": f"expected {{'until': hour}}: {exc}"}, 422)
        if wanted.until % 3600 or wanted.until < 0:
            return _json({"error": "until must be the start of an hour, in Unix seconds"}, 422)
        if wanted.start is not None and (wanted.start % 3600 or wanted.start < 0):
            return _json({"error": "from must be the start of an hour, in Unix seconds"}, 422)
        until = min(wanted.until, floor_hour(clock()))
        try:
            sealed = await asyncio.to_thread(seal_until, site, until)
        except StoreUnavailable:
            return _json({"error": "storage is temporarily unavailable; retry later"}, 503)
        return _json({"sealed_until": sealed})

    return [
        Route(STATE_PATH, state, methods=["GET"]),
        Route(SEAL_PATH, seal, methods=["POST"]),
    ]
