"""The collector's HTTP API: ``create_app(settings, store, sites)``, no global app."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_from_bytes

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from headcount import wire
from headcount_collector import openapi, privacy
from headcount_collector.accesslog import AccessLogMiddleware
from headcount_collector.config import Settings, Site, SiteRegistry, load_sites, token_digest
from headcount_collector.dashboard import dashboard_routes
from headcount_collector.errors import (
    ConfigError,
    IngestRejected,
    QueryRejected,
    StoreUnavailable,
)
from headcount_collector.groupcommit import GroupCommitter
from headcount_collector.importing import import_routes
from headcount_collector.ingest import (
    ClientDisconnected,
    decode_batch,
    read_body,
    validate_batch,
)
from headcount_collector.metrics import Metrics, NoMetrics, PrometheusMetrics
from headcount_collector.query import (
    parse_stats_query,
    render_csv,
    run_stats_query,
    stated_guarantee,
)
from headcount_collector.release.sealing import NoisePool, seal_due
from headcount_collector.retention import run_retention
from headcount_collector.stores.base import Store

__all__ = ["create_app"]

logger = logging.getLogger("headcount_collector")
_encode = msgspec.json.Encoder().encode
_JSON = "application/json"
# What a redirect's Location keeps as it is in a path, and in a query (escapes too).
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?%"
# Every bucket a site can hold (years 1970-9998, as queries allow).
_ALL_TIME = (0, 253_402_300_800)


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(payload), status_code=status, media_type=_JSON, headers=headers)


def _bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _bearer(request: Request) -> str | None:
    return _bearer_token(request.headers.get("authorization"))


def _unauthorized(message: str) -> Response:
    return _json({"error": message}, 401, {"WWW-Authenticate": 'Bearer realm="headcount"'})


def _wrong_read_token(token: str | None) -> Response:
    if token is not None and token.startswith("hcw_"):
        # The prefixes exist so that a swapped token can be named; the token is not echoed.
        return _unauthorized("that is a write token (hcw_...); queries take the read token")
    return _unauthorized("missing or wrong read token")


def _unavailable() -> Response:
    return _json(
        {"error": "storage is temporarily unavailable; retry later"}, 503, {"Retry-After": "5"}
    )


def create_app(
    settings: Settings,
    store: Store,
    sites: SiteRegistry | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
) -> Starlette:
    """Build the collector. ``store`` is migrated here; ``clock`` exists for tests.

    ``metrics`` receives the operational figures; by default Prometheus metrics when
    ``settings`` ask for them (a metrics token or port), else none.
    """
    registry = sites if sites is not None else load_sites(settings.config_path)
    if metrics is None:
        wanted = settings.metrics_token_sha256 or settings.metrics_port
        metrics = PrometheusMetrics() if wanted else NoMetrics()
    store.migrate()
    store.key_cap = settings.max_keys_per_hour
    committer = GroupCommitter(store, settings.max_group_batches, metrics=metrics)

    ingest = IngestEndpoint(registry, committer, clock, settings.dedupe_seconds, metrics)
    history_ingest = IngestEndpoint(
        registry, committer, clock, settings.dedupe_seconds, metrics, history=True
    )

    async def stats(request: Request) -> Response:
        token = _bearer(request)
        site = registry.by_read_token(token) if token else None
        if site is None:
            return _wrong_read_token(token)
        now = clock()
        try:
            query = parse_stats_query(list(request.query_params.multi_items()), site, now)
            result = await asyncio.to_thread(run_stats_query, store, site, query, now)
        except QueryRejected as exc:
            return _json({"error": exc.error, "parameter": exc.parameter}, 400)
        except StoreUnavailable:
            return _unavailable()
        if query.format == "csv":
            return Response(
                render_csv(result),
                media_type="text/csv; charset=utf-8",
                headers=privacy.csv_headers(site, result),
            )
        return _json(result)

    async def schema(request: Request) -> Response:
        document: dict[str, object] = {"wire": wire.schema_document()}
        token = _bearer(request)
        if token is not None:
            site = registry.by_read_token(token)
            if site is None:
                return _wrong_read_token(token)
            modes, stated = await asyncio.to_thread(_declared, site)
            document["site"] = privacy.site_declaration(site, modes, stated)
        return _json(document)

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    metrics_digest = bytes.fromhex(settings.metrics_token_sha256)

    async def metrics_page(request: Request) -> Response:
        token = _bearer(request)
        if token is None or not hmac.compare_digest(token_digest(token), metrics_digest):
            return _unauthorized("missing or wrong metrics token")
        body, content_type = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=content_type)

    async def openapi_json(request: Request) -> Response:
        return _json(openapi.document())

    page_headers = {"Content-Security-Policy": privacy.PAGE_CSP}

    def _declared(site: Site) -> tuple[dict[str, int], dict[str, object] | None]:
        """The visits modes a site's senders declared, and the guarantee over all it
        released (None for an exact site)."""
        modes = store.declared_visit_modes(site.id)
        if not site.policy.noise:
            return modes, None
        return modes, stated_guarantee(site, store.seal_params(site.id), _ALL_TIME)

    async def privacy_page(request: Request) -> Response:
        # Collector-wide: what every site shares, naming none of them.
        return HTMLResponse(privacy.render_common_page(), headers=page_headers)

    async def site_privacy_page(request: Request) -> Response:
        site = registry.get(request.path_params["site"])
        if site is None:
            return HTMLResponse(privacy.render_not_found(), 404, page_headers)
        try:
            modes, stated = await asyncio.to_thread(_declared, site)
        except StoreUnavailable:
            modes, stated = {}, None
        return HTMLResponse(privacy.render_site_page(site, modes, stated), headers=page_headers)

    pool = NoisePool()

    def seal_all() -> bool:
        """Seal what is due for every site; True when some site still has a backlog."""
        behind = False
        for site in registry:
            try:
                report = seal_due(store, site, clock(), pool)
            except StoreUnavailable as exc:
                logger.warning("sealing for site %s failed, will retry: %s", site.id, exc)
                continue
            if report.cells:
                logger.info(
                    "sealed site %s: %d steps, %d cells released",
                    site.id,
                    report.steps,
                    report.cells,
                )
            behind = behind or report.behind
        return behind

    async def sealing_loop() -> None:
        while True:
            try:
                behind = await asyncio.to_thread(seal_all)
            except Exception:
                # A bug or an unexpected store error must not stop releases for good.
                logger.exception("sealing failed; retrying in %s s", settings.seal_interval)
                behind = False
            await asyncio.sleep(0.5 if behind else settings.seal_interval)

    async def retention_loop() -> None:
        while True:
            await asyncio.sleep(settings.retention_interval)
            try:
                await asyncio.to_thread(
                    run_retention, store, list(registry), settings, clock(), metrics
                )
            except Exception:
                # Keep trying every interval: one failure (a read-only failover, a lost
                # privilege) must not end retention for the life of the process.
                logger.exception("retention failed; retrying in %s s", settings.retention_interval)

    async def reload_sites() -> None:
        try:
            fresh = await asyncio.to_thread(load_sites, settings.config_path)
        except ConfigError as exc:
            logger.error("SIGHUP: the site file has an error, keeping the sites in use: %s", exc)
            return
        registry.replace(fresh)
        logger.info("SIGHUP: reloaded %s: %s", settings.config_path, ", ".join(s.id for s in fresh))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await committer.start()
        retention = asyncio.create_task(retention_loop(), name="headcount-retention")
        sealing = asyncio.create_task(sealing_loop(), name="headcount-sealing")
        reloads: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        if settings.reload_on_sighup:
            # Requests keep being served while the file is read; the new sites take
            # over in one step (SiteRegistry.replace).
            def on_sighup() -> None:
                task = loop.create_task(reload_sites())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            yield
        finally:
            if settings.reload_on_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in (retention, sealing):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await committer.stop()

    app = _CollectorApp(
        ingest,
        routes=[
            Route(wire.INGEST_PATH, ingest, methods=["POST"]),  # a plain ASGI endpoint
            Route("/v1/stats", stats, methods=["GET"]),
            Route("/v1/schema", schema, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/privacy", privacy_page, methods=["GET"]),
            Route("/privacy/{site}", site_privacy_page, methods=["GET"]),
            *import_routes(registry, store, clock, settings.dedupe_seconds, pool, history_ingest),
            *(
                [Route("/metrics", metrics_page, methods=["GET"])]
                if settings.metrics_token_sha256
                else []
            ),
            *dashboard_routes(registry, store, clock),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.committer = committer
    app.state.store = store
    app.state.sites = registry
    app.state.seal_all = seal_all
    if settings.access_log:
        app.add_middleware(AccessLogMiddleware)
    return app


class _CollectorApp(Starlette):
    """Starlette, except that ``POST /v1/ingest`` goes straight to its endpoint.

    The busiest route skips the error and exception middleware (which builds a Request
    per call) and the route matching: for 1-record batches those cost as much as the
    endpoint's own work. The endpoint answers every error it knows itself; anything else
    propagates to the server, which logs it and answers 500 as the middleware would.
    Added middleware (the access log) sees every request, so then nothing is skipped.
    """

    def __init__(self, ingest: IngestEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ingest = ingest
        # Starlette's slash redirect builds its Location from the Host header, which a
        # request (or a cache poisoned by one) can set to any site; this app's own
        # redirect names only the path.
        self.router.redirect_slashes = False
        self.router.default = self._slash_redirect_or_not_found

    async def _slash_redirect_or_not_found(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and path != "/":
            flipped = path.rstrip("/") if path.endswith("/") else path + "/"
            if not flipped.startswith("//") and any(
                route.matches({**scope, "path": flipped})[0] != Match.NONE
                for route in self.router.routes
            ):
                # The path is decoded: a "?" or "%" in it is encoded again, never taken as
                # the start of a query or an escape. A mount's prefix is already in it
                # (as uvicorn passes it), unless the server left it out.
                root = scope.get("root_path", "")
                target = flipped if not root or path.startswith(root) else root + flipped
                location = quote(target, safe=_PATH_SAFE)
                query: bytes = scope.get("query_string", b"")
                if query:
                    location += "?" + quote_from_bytes(query, safe=_QUERY_SAFE)
                await RedirectResponse(location, 307)(scope, receive, send)
                return
        await self.router.not_found(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == wire.INGEST_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.user_middleware
        ):
            scope["app"] = self
            await self._ingest(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _hardened(message.get("headers", []))
            await send(message)

        await super().__call__(scope, receive, send_hardened)


# Every answer: never sniffed into another type, never framed, nothing loaded or run by
# default. The dashboard and the privacy pages send their own, looser policy.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_DEFAULT_CSP = (
    b"content-security-policy",
    b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
)


def _hardened(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    hardened = list(headers)
    names = {name.lower() for name, _ in hardened}
    if _NOSNIFF[0] not in names:
        hardened.append(_NOSNIFF)
    if _DEFAULT_CSP[0] not in names:
        hardened.append(_DEFAULT_CSP)
    return hardened


_JSON_HEADERS = [(b"content-type", b"application/json"), _NOSNIFF, _DEFAULT_CSP]
_UNAUTHORIZED_HEADERS = [*_JSON_HEADERS, (b"www-authenticate", b'Bearer realm="headcount"')]
_UNAVAILABLE_HEADERS = [*_JSON_HEADERS, (b"retry-after", b"5")]


class IngestEndpoint:
    """``POST /v1/ingest`` as a plain ASGI endpoint.

    The busiest route skips Starlette's Request and Response objects: it reads the four
    headers it needs in one pass and answers with prebuilt header lists. At thousands of
    small batches a second those objects cost more than decoding and validating.
    """

    def __init__(
        self,
        registry: SiteRegistry,
        committer: GroupCommitter,
        clock: Callable[[], float],
        dedupe_seconds: int,
        metrics: Metrics | None = None,
        *,
        history: bool = False,
    ) -> None:
        self._metrics: Metrics = metrics if metrics is not None else NoMetrics()
        self._dedupe_seconds = dedupe_seconds
        self._history = history
        self._registry = registry
        self._committer = committer
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = content_type = content_length = content_encoding = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == b"content-encoding":
                content_encoding = value
        site = self._site(authorization)
        if site is None:
            self._metrics.rejected(401)
            error = "missing or wrong write token"
            if authorization is not None and b" hcr_" in authorization:
                error = "that is a read token (hcr_...); sending takes the write token"
            await _answer(send, 401, {"error": error}, _UNAUTHORIZED_HEADERS)
            return
        media_type = (content_type or b"").split(b";", 1)[0].strip().lower()
        if media_type != b"application/json":
            self._metrics.rejected(415)
            await _answer(send, 415, {"error": "Content-Type must be application/json"})
            return
        try:
            body = await read_body(
                receive,
                content_length.decode("latin-1") if content_length is not None else None,
                content_encoding.decode("latin-1") if content_encoding is not None else None,
            )
            batch = decode_batch(body)
            pending = validate_batch(
                batch, site, int(self._clock()), self._dedupe_seconds, history=self._history
            )
        except ClientDisconnected:
            return
        except IngestRejected as exc:
            self._metrics.rejected(exc.status)
            payload = {"error": exc.error}
            if exc.path is not None:
                payload["path"] = exc.path
            await _answer(send, exc.status, payload)
            return
        try:
            applied = await self._committer.submit(pending)
        except StoreUnavailable:
            self._metrics.rejected(503)
            await _answer(
                send,
                503,
                {"error": "storage is temporarily unavailable; retry later"},
                _UNAVAILABLE_HEADERS,
            )
            return
        if applied:
            self._metrics.batch_accepted(pending.records)
            answer: dict[str, int] = {"accepted": pending.records}
            if pending.late:
                # Stored and counted in a still-open day, but a sealed hour never changes.
                answer["late"] = pending.late
            await _answer(send, 202, answer)
        else:
            self._metrics.batch_duplicate()
            await _answer(send, 200, {"duplicate": True})

    def _site(self, authorization: bytes | None) -> Site | None:
        token = _bearer_token(authorization.decode("latin-1") if authorization else None)
        return None if token is None else self._registry.by_write_token(token)


async def _answer(
    send: Send,
    status: int,
    payload: object,
    headers: list[tuple[bytes, bytes]] = _JSON_HEADERS,
) -> None:
    body = _encode(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
