"""One typed settings object, built from arguments, then the environment, then defaults."""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from headcount._errors import ConfigurationError, ConfigurationTypeError, ConfigurationWarning
from headcount.wire import INGEST_PATH, VisitsMode

__all__ = [
    "DEFAULT_EXCLUDE_ROUTES",
    "ENV_PREFIX",
    "HttpClient",
    "HttpResponse",
    "TrackerSettings",
    "is_client_instance",
]

ENV_PREFIX = "HEADCOUNT_"

# Machine traffic and assets that are never a pageview. Matched against the normalised
# route template; a trailing `*` makes a prefix match.
DEFAULT_EXCLUDE_ROUTES: tuple[str, ...] = (
    "/healthz",
    "/health",
    "/livez",
    "/readyz",
    "/metrics",
    "/static/*",
    "/favicon.ico",
    "/robots.txt",
    "/sitemap.xml",
    "/admin*",
)

SendSchedule = Literal["immediate", "hourly"]

MEMORY_STORE = "memory"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class HttpResponse(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Any: ...  # a case-insensitive mapping with .get()
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


@runtime_checkable
class HttpClient(Protocol):
    """What the sender needs of a client: ``httpx.Client`` and its look-alikes (such as
    Starlette's ``TestClient``, which may be built on a fork of httpx)."""

    def build_request(
        self, method: str, url: str, *, content: bytes, headers: dict[str, str], timeout: float
    ) -> Any: ...
    def send(self, request: Any) -> HttpResponse: ...
    def close(self) -> None: ...


HttpClientOption = HttpClient | Callable[[], HttpClient]


def is_client_instance(value: object) -> bool:
    """A ready client rather than a factory (a client class is a factory too)."""
    return isinstance(value, HttpClient) and not isinstance(value, type)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerSettings:
    """Everything a ``Tracker`` is configured with. Build it with ``TrackerSettings.build``.

    Every option can be passed as a ``Tracker`` keyword argument, set as the environment
    variable ``HEADCOUNT_<OPTION>`` (except ``http_client`` and ``transport``), or left
    to its default.
    """

    endpoint: str = ""
    write_token: str = dataclasses.field(default="", repr=False)
    enabled: bool = True
    # Seconds between sends (each interval jittered by ±10%; the first send comes sooner).
    flush_interval: float = 60.0
    # Total time the interpreter's exit may spend sending what is left.
    shutdown_timeout: float = 2.0
    # Upper bound on one HTTP request; a flush deadline shortens it further.
    request_timeout: float = 10.0
    # Distinct counting keys per send window; further new keys count into route (other).
    max_keys: int = 10_000
    # Routes never counted as pageviews, on top of DEFAULT_EXCLUDE_ROUTES unless
    # exclude_default_routes is False; see ``excluded_routes`` for the list in force.
    exclude_routes: tuple[str, ...] = ()
    exclude_default_routes: bool = True
    # Hourly by default: the collector's operator learns nothing finer than the hour from
    # when counts arrive, and sealed release publishes an hour only later anyway.
    send_schedule: SendSchedule = "hourly"
    # Unsent batches kept for retry; when any bound is hit the oldest batch is dropped.
    max_buffer_batches: int = 100
    max_buffer_bytes: int = 16 * 1024 * 1024
    max_buffer_age: float = 24 * 3600.0
    # Retry backoff: doubles from backoff_initial up to backoff_max seconds, jittered.
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    # A client, or a factory called once per process (use a factory if the app forks).
    http_client: HttpClientOption | None = dataclasses.field(default=None, repr=False)
    transport: httpx.BaseTransport | None = dataclasses.field(default=None, repr=False)
    # Visits: one browser's pageviews linked, in memory only, while no gap of visit_gap
    # seconds separates them; only the finished visit's range labels are sent.
    visits: bool = True
    # "memory" (each process links its own requests) or a Redis URL shared by workers.
    visits_store: str = dataclasses.field(default=MEMORY_STORE, repr=False)
    visit_gap: float = 1800.0
    # Open visits kept in memory; when full, the least recently active visit is closed.
    max_visits: int = 100_000
    # Proxies (addresses or CIDR networks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()
    # Redis store only: the longest a request may wait on Redis, and the key prefix.
    visits_redis_timeout: float = 0.05
    visits_redis_prefix: str = "headcount:visits:"
    # Redis store only: the app-side secret each day's link key is derived from. Shared
    # by the app's workers, never written to Redis, so reading Redis links nobody.
    visits_secret: str = dataclasses.field(default="", repr=False)

    @classmethod
    def build(
        cls, options: Mapping[str, object], environ: Mapping[str, str] | None = None
    ) -> TrackerSettings:
        """Settings from ``options`` (names case-insensitive), then ``environ``, then defaults.

        Raises ``ConfigurationError`` for an unknown or invalid option; warns with
        ``ConfigurationWarning`` and uses the default for an invalid environment value.
        """
        env = os.environ if environ is None else environ
        given: dict[str, object] = {}
        for raw_name, value in options.items():
            if not isinstance(raw_name, str):
                raise ConfigurationTypeError(f"option names must be strings, got {raw_name!r}")
            name = raw_name.lower()
            if name not in _OPTIONS:
                raise ConfigurationError(f"unknown Headcount option {raw_name!r}")
            if value is None and name in _REQUIRED_STR:
                continue
            given[name] = _OPTIONS[name].check(name, value)
        values: dict[str, object] = {}
        for name, option in _OPTIONS.items():
            if name in given:
                values[name] = given[name]
                continue
            if option.parse is None:
                continue
            env_name = ENV_PREFIX + name.upper()
            raw = env.get(env_name)
            if raw is None:
                continue
            try:
                values[name] = option.check(name, option.parse(raw))
            except (ValueError, TypeError) as exc:
                warnings.warn(
                    f"ignoring {env_name}: {exc}; using the default",
                    ConfigurationWarning,
                    stacklevel=4,
                )
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.enabled:
            if not settings.endpoint:
                raise ConfigurationError(
                    "endpoint is required: pass endpoint= or set HEADCOUNT_ENDPOINT "
                    "(or pass enabled=False)"
                )
            if not settings.write_token:
                raise ConfigurationError(
                    "write_token is required: pass write_token= or set HEADCOUNT_WRITE_TOKEN"
                )
        if settings.http_client is not None and settings.transport is not None:
            raise ConfigurationError("pass either http_client or transport, not both")
        if settings.visits_mode == "redis" and importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                "visits_store is a Redis URL but redis-py is missing: "
                "pip install 'headcount[redis]'"
            )
        if settings.visits_mode == "redis" and not settings.visits_secret:
            raise ConfigurationError(
                "visits_store is a Redis URL: set visits_secret (HEADCOUNT_VISITS_SECRET) to "
                f"a random string of at least {_MIN_SECRET} characters, the same for every "
                'worker of the app, e.g. from: python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )
        return settings

    @property
    def visits_mode(self) -> VisitsMode:
        """How visits are linked: not at all, per process, or in a shared Redis."""
        if not self.visits:
            return "off"
        return "memory" if self.visits_store == MEMORY_STORE else "redis"

    @property
    def excluded_routes(self) -> tuple[str, ...]:
        """The route patterns in force: the defaults (unless turned off), then additions."""
        defaults = DEFAULT_EXCLUDE_ROUTES if self.exclude_default_routes else ()
        return tuple(dict.fromkeys((*defaults, *self.exclude_routes)))

    @property
    def ingest_url(self) -> str:
        return self.endpoint.rstrip("/") + INGEST_PATH

    @property
    def safe_endpoint(self) -> str:
        """The endpoint for logs and messages: never a user name or password."""
        return _without_credentials(self.endpoint)

    @property
    def safe_ingest_url(self) -> str:
        return _without_credentials(self.ingest_url)


def _without_credentials(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "(an unparsable URL)"
    return str(parsed.copy_with(username=None, password=None))


# --- option checking --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Option:
    check: Callable[[str, object], object]
    parse: Callable[[str], object] | None  # None: cannot come from the environment


def _parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationTypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _check_number(low: float, high: float, *, integer: bool) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "an int" if integer else "a number"
            raise ConfigurationTypeError(f"{name} must be {kind}, got {type(value).__name__}")
        if integer and not isinstance(value, int):
            raise ConfigurationTypeError(f"{name} must be an int, got {type(value).__name__}")
        if not math.isfinite(value) or not low <= value <= high:
            raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
        return value if integer else float(value)

    return check


def _check_endpoint(name: str, value: object) -> str:
    # Never echo the value: a URL may carry a user name and password.
    if not isinstance(value, str):
        raise ConfigurationTypeError(f"{name} must be a string, got {type(value).__name__}")
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, ValueError) as exc:
        raise ConfigurationError(f"{name} is not a valid URL (the value is not shown)") from exc
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise ConfigurationError(
            f"{name} must be an http(s) URL with a host and without query or fragment, "
            "e.g. https://stats.example.org (the value is not shown)"
        )
    endpoint = value.strip().rstrip("/")
    # The collector's base URL is wanted; the ingest URL itself is the usual mistake, and
    # it is unambiguous, so it is taken to mean its base rather than posting to
    # /v1/ingest/v1/ingest and getting a 404.
    if endpoint.endswith(INGEST_PATH):
        endpoint = endpoint[: -len(INGEST_PATH)]
    return endpoint


def _check_token(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationTypeError(f"{name} must be a string, got {type(value).__name__}")
    token = value.strip()
    # The token goes into a header: anything but visible ASCII would break or smuggle it.
    if not token or not all("!" <= c <= "~" for c in token):
        raise ConfigurationError(f"{name} must be non-empty visible ASCII without spaces")
    return token


def _check_routes(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationTypeError(f"{name} must be a list of route patterns")
    routes: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.startswith("/"):
            raise ConfigurationError(f"{name} entries must be strings starting with '/'")
        routes.append(item)
    return tuple(routes)


def _check_schedule(name: str, value: object) -> str:
    if value not in ("immediate", "hourly"):
        raise ConfigurationError(f"{name} must be 'immediate' or 'hourly', got {value!r}")
    return str(value)


def _check_visits_store(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationTypeError(f"{name} must be a string, got {type(value).__name__}")
    store = value.strip()
    if store == MEMORY_STORE or store.startswith(_REDIS_SCHEMES):
        return store
    # Never echo the value: a Redis URL may carry a password.
    raise ConfigurationError(f"{name} must be 'memory' or a redis://, rediss:// or unix:// URL")


def _check_networks(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationTypeError(f"{name} must be a list of addresses or CIDR networks")
    networks: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigurationTypeError(f"{name} entries must be strings")
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as exc:
            raise ConfigurationError(
                f"{name}: {item!r} is not an IP address or CIDR network"
            ) from exc
    return tuple(networks)


def _check_prefix(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationTypeError(f"{name} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= 100 or not all("!" <= c <= "~" for c in value):
        raise ConfigurationError(f"{name} must be 1-100 visible ASCII characters")
    return value


_MIN_SECRET = 32


def _check_secret(name: str, value: object) -> str:
    # Never echo the value.
    if not isinstance(value, str):
        raise ConfigurationTypeError(f"{name} must be a string, got {type(value).__name__}")
    secret = value.strip()
    if len(secret) < _MIN_SECRET or len(set(secret)) < 8:
        raise ConfigurationError(
            f"{name} must be a random string of at least {_MIN_SECRET} characters"
        )
    return secret


def _check_http_client(name: str, value: object) -> object:
    if value is not None and not (is_client_instance(value) or callable(value)):
        raise ConfigurationTypeError(f"{name} must be an httpx.Client or a factory returning one")
    return value


def _check_transport(name: str, value: object) -> object:
    if value is not None and not isinstance(value, httpx.BaseTransport):
        raise ConfigurationTypeError(f"{name} must be an httpx.BaseTransport")
    return value


_OPTIONS: dict[str, _Option] = {
    "endpoint": _Option(_check_endpoint, str),
    "write_token": _Option(_check_token, str),
    "enabled": _Option(_check_bool, _parse_bool),
    "flush_interval": _Option(_check_number(0.01, 86400, integer=False), float),
    "shutdown_timeout": _Option(_check_number(0, 600, integer=False), float),
    "request_timeout": _Option(_check_number(0.01, 600, integer=False), float),
    "max_keys": _Option(_check_number(1, 10_000_000, integer=True), int),
    "exclude_routes": _Option(_check_routes, _parse_list),
    "exclude_default_routes": _Option(_check_bool, _parse_bool),
    "send_schedule": _Option(_check_schedule, str.strip),
    "max_buffer_batches": _Option(_check_number(1, 1_000_000, integer=True), int),
    "max_buffer_bytes": _Option(_check_number(1024, 2**40, integer=True), int),
    # At most the 48 hours every collector remembers batch ids for: an older retry
    # could be counted twice.
    "max_buffer_age": _Option(_check_number(1, 48 * 3600, integer=False), float),
    "backoff_initial": _Option(_check_number(0.001, 3600, integer=False), float),
    "backoff_max": _Option(_check_number(0.001, 86400, integer=False), float),
    "http_client": _Option(_check_http_client, None),
    "transport": _Option(_check_transport, None),
    "visits": _Option(_check_bool, _parse_bool),
    "visits_store": _Option(_check_visits_store, str),
    "visit_gap": _Option(_check_number(0.01, 86400, integer=False), float),
    "max_visits": _Option(_check_number(1, 10_000_000, integer=True), int),
    "trusted_proxies": _Option(_check_networks, _parse_list),
    "visits_redis_timeout": _Option(_check_number(0.001, 10, integer=False), float),
    "visits_redis_prefix": _Option(_check_prefix, str.strip),
    "visits_secret": _Option(_check_secret, str),
}
_REQUIRED_STR = frozenset({"endpoint", "write_token"})
