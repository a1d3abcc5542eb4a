"""The Tracker's settings: one msgspec ``Struct`` whose field types and ``Meta`` constraints
are the whole validation, built from arguments, then the environment, then defaults."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import warnings
from collections.abc import Mapping
from typing import Annotated, Final, Literal

import httpx
import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from headcount._errors import ConfigurationError, ConfigurationTypeError, ConfigurationWarning
from headcount.wire import INGEST_PATH, VisitsMode

__all__ = [
    "DEFAULT_EXCLUDE_ROUTES",
    "ENV_PREFIX",
    "SendSchedule",
    "TrackerSettings",
    "VisitsMode",
    "option_names",
]

ENV_PREFIX: Final = "HEADCOUNT_"

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

MEMORY_STORE: Final = "memory"
_MIN_SECRET: Final = 32

# Empty means "not set": required only while the tracker is enabled (checked by build).
_Endpoint = Annotated[str, Meta(pattern=r"^(https?://[^\s/?#]+[^\s?#]*)?$")]
# The token goes into a header: anything but visible ASCII would break or smuggle it.
_Token = Annotated[str, Meta(pattern=r"^[!-~]*$")]
_RoutePattern = Annotated[str, Meta(pattern=r"^/")]
_VisitsStore = Annotated[str, Meta(pattern=r"^(memory|(redis|rediss|unix)://\S*)$")]
_RedisPrefix = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[!-~]+$")]


class TrackerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a ``Tracker`` is configured with; ``tracker.settings`` is one.

    Every field is a ``Tracker`` keyword argument of the same name, the environment
    variable ``HEADCOUNT_<NAME>`` (all but ``transport``), the Flask config key
    ``HEADCOUNT_<NAME>`` and a key of Django's ``HEADCOUNT`` dict. ``build`` makes one
    from any of these; ``msgspec.convert(mapping, TrackerSettings)`` checks a mapping the
    same way, without the environment.
    """

    # --- the collector -------------------------------------------------------------
    endpoint: _Endpoint = ""
    write_token: _Token = ""
    enabled: bool = True
    # --- sending -------------------------------------------------------------------
    # Seconds between sends (each interval jittered by ±10%; the first send comes sooner).
    flush_interval: Annotated[float, Meta(ge=0.01, le=86400)] = 60.0
    # Hourly by default: the collector's operator learns nothing finer than the hour from
    # when counts arrive, and sealed release publishes an hour only later anyway.
    send_schedule: SendSchedule = "hourly"
    # Total time the interpreter's exit may spend sending what is left.
    shutdown_timeout: Annotated[float, Meta(ge=0, le=600)] = 2.0
    # A directory where, under the hourly schedule, an exiting process leaves the hours
    # it still holds for the app's next process to send at their moment ("": sent at
    # exit, which times the exit). See headcount._spool.
    exit_spool: Annotated[str, Meta(max_length=4096)] = ""
    # Upper bound on one HTTP request; a flush deadline shortens it further.
    request_timeout: Annotated[float, Meta(ge=0.01, le=600)] = 10.0
    # Retry backoff: doubles from backoff_initial up to backoff_max seconds, jittered.
    backoff_initial: Annotated[float, Meta(ge=0.001, le=3600)] = 1.0
    backoff_max: Annotated[float, Meta(ge=0.001, le=86400)] = 300.0
    # The one way to swap HTTP (httpx.MockTransport in tests); None: a real connection.
    transport: httpx.BaseTransport | None = None
    # --- the buffer of unsent batches: when any bound is hit the oldest is dropped ---
    max_buffer_batches: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    max_buffer_bytes: Annotated[int, Meta(ge=1024, le=2**40)] = 16 * 1024 * 1024
    # At most the 48 hours every collector remembers batch ids for: an older retry
    # could be counted twice.
    max_buffer_age: Annotated[float, Meta(ge=1, le=48 * 3600)] = 24 * 3600.0
    # --- counting ------------------------------------------------------------------
    # Distinct counting keys per send window; further new keys count into route (other).
    max_keys: Annotated[int, Meta(ge=1, le=10_000_000)] = 10_000
    # Routes never counted as pageviews, on top of DEFAULT_EXCLUDE_ROUTES unless
    # exclude_default_routes is False; see ``excluded_routes`` for the list in force.
    exclude_routes: tuple[_RoutePattern, ...] = ()
    exclude_default_routes: bool = True
    # --- visits: one browser's pageviews linked while no gap of visit_gap separates
    # them; only the finished visit's range labels are sent ---------------------------
    visits: bool = True
    # "memory" (each process links its own requests) or a Redis URL shared by workers.
    visits_store: _VisitsStore = MEMORY_STORE
    visit_gap: Annotated[float, Meta(ge=0.01, le=86400)] = 1800.0
    # Open visits kept in memory; when full, the least recently active visit is closed.
    max_visits: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000
    # Proxies (addresses or CIDR networks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()
    # Redis store only: the longest the link worker waits on Redis, and the key prefix.
    visits_redis_timeout: Annotated[float, Meta(ge=0.001, le=10)] = 0.05
    visits_redis_prefix: _RedisPrefix = "headcount:visits:"
    # Redis store only: the app-side secret each day's link key is derived from. Shared
    # by the app's workers, never written to Redis, so reading Redis links nobody.
    visits_secret: str = ""

    def __post_init__(self) -> None:
        # Only what a type and a constraint cannot say. Messages never echo a URL or a
        # secret: either may carry a password.
        endpoint = self.endpoint.rstrip("/")
        if endpoint:
            try:
                host = httpx.URL(endpoint).host
            except (httpx.InvalidURL, ValueError) as exc:
                raise ValueError("endpoint is not a valid URL (the value is not shown)") from exc
            if not host:
                raise ValueError("endpoint has no host (the value is not shown)")
        # The collector's base URL is wanted; the ingest URL itself is the usual mistake,
        # and it is unambiguous, so it is taken to mean its base.
        force_setattr(self, "endpoint", endpoint.removesuffix(INGEST_PATH))
        secret = self.visits_secret.strip()
        if secret and (len(secret) < _MIN_SECRET or len(set(secret)) < 8):
            raise ValueError(
                f"visits_secret must be a random string of at least {_MIN_SECRET} characters"
            )
        force_setattr(self, "visits_secret", secret)
        networks = []
        for item in self.trusted_proxies:
            try:
                networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an IP address or CIDR network"
                ) from exc
        force_setattr(self, "trusted_proxies", tuple(networks))

    def __repr__(self) -> str:
        # No token, no URL that may carry a password, no secret, no object.
        return f"TrackerSettings(endpoint={self.safe_endpoint!r}, enabled={self.enabled})"

    @classmethod
    def build(
        cls, options: Mapping[str, object], environ: Mapping[str, str] | None = None
    ) -> TrackerSettings:
        """Settings from ``options`` (names in any case; None means not given), then
        ``environ`` (default: ``os.environ``), then defaults.

        Raises ``ConfigurationError`` naming the option for an unknown or invalid one;
        warns with ``ConfigurationWarning`` and uses the default for an invalid
        environment value.
        """
        given: dict[str, object] = {}
        for name, value in options.items():
            if not isinstance(name, str):
                raise ConfigurationTypeError(f"option names must be strings, got {name!r}")
            if value is not None:
                given[name.lower()] = value
        values = {**_from_environment(os.environ if environ is None else environ), **given}
        try:
            settings = msgspec.convert(values, cls)
        except msgspec.ValidationError as exc:
            raise _configuration_error(exc) from None
        settings._check_together()
        return settings

    def _check_together(self) -> None:
        """What no single field can tell: required fields, and what Redis needs."""
        if self.enabled:
            if not self.endpoint:
                raise ConfigurationError(
                    "endpoint is required: pass endpoint= or set HEADCOUNT_ENDPOINT (Flask: "
                    'app.config["HEADCOUNT_ENDPOINT"]; Django: "ENDPOINT" in settings.HEADCOUNT)'
                    " (or pass enabled=False)"
                )
            if not self.write_token:
                raise ConfigurationError(
                    "write_token is required: pass write_token= or set HEADCOUNT_WRITE_TOKEN "
                    '(Flask: app.config["HEADCOUNT_WRITE_TOKEN"]; Django: "WRITE_TOKEN" in '
                    "settings.HEADCOUNT)"
                )
            if self.write_token.startswith("hcr_"):
                # Said now rather than as a 401 on the first send, minutes later.
                raise ConfigurationError(
                    "write_token is a read token (hcr_...): the SDK sends with the site's "
                    "write token (hcw_...), as `headcount-collector init` printed it"
                )
        if self.visits_mode == "redis" and importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                "visits_store is a Redis URL but redis-py is missing: "
                "pip install 'headcount[redis]'"
            )
        if self.visits_mode == "redis" and not self.visits_secret:
            raise ConfigurationError(
                "visits_store is a Redis URL: set visits_secret (HEADCOUNT_VISITS_SECRET) to "
                f"a random string of at least {_MIN_SECRET} characters, the same for every "
                'worker of the app, e.g. from: python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )

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
        return self.endpoint + INGEST_PATH

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


# --- the environment --------------------------------------------------------------------

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})
# Options that only make sense as objects: they never come from the environment.
_NOT_FROM_ENVIRONMENT: Final = frozenset({"transport"})


def _from_environment(environ: Mapping[str, str]) -> dict[str, object]:
    """Each ``HEADCOUNT_*`` variable as its field's value; an invalid one warns and is left
    out, so its default applies."""
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(TrackerSettings):
        name = field.name
        variable = ENV_PREFIX + name.upper()
        raw = environ.get(variable)
        if raw is None or name in _NOT_FROM_ENVIRONMENT:
            continue
        text: object = raw.strip()
        if isinstance(field.default, bool) and raw.strip().lower() in _TRUE | _FALSE:
            text = raw.strip().lower() in _TRUE
        elif isinstance(field.default, tuple):
            text = [part.strip() for part in raw.split(",") if part.strip()]
        try:
            # One field at a time, in lax mode (text becomes numbers), so one bad
            # variable costs only its own value.
            values[name] = getattr(
                msgspec.convert({name: text}, TrackerSettings, strict=False), name
            )
        except msgspec.ValidationError as exc:
            warnings.warn(
                f"ignoring {variable}: {_configuration_error(exc)}; using the default",
                ConfigurationWarning,
                stacklevel=5,
            )
    return values


_WRONG_TYPE: Final = re.compile(r"^Expected `[^`]+`, got `[^`]+`$|^Expected `[^`]+`$")


def _configuration_error(exc: msgspec.ValidationError) -> ConfigurationError:
    """msgspec's message, led by the option's name (``$.visit_gap`` -> ``visit_gap``)."""
    reason, _, where = str(exc).partition(" - at `")
    path = where.removesuffix("`").removeprefix("$.")
    if "unknown field" in reason:
        field = reason.rsplit("`", 2)[-2] if reason.count("`") >= 2 else "?"
        return ConfigurationError(f"unknown Headcount option {field!r}")
    message = f"Headcount option {path}: {reason}" if path and path != "$" else reason
    if _WRONG_TYPE.match(reason):
        return ConfigurationTypeError(message)
    return ConfigurationError(message)


def option_names() -> tuple[str, ...]:
    """Every option's name, in the settings' order."""
    return tuple(field.name for field in msgspec.structs.fields(TrackerSettings))
