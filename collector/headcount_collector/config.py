"""Sites and the collector's settings: one typed object shared by the CLI and the code.

The site file is a user-facing contract (see README, "Configuration"): keys may be added,
never renamed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from headcount import wire
from headcount_collector.errors import ConfigError, split_validation_error
from headcount_collector.release.policy import (
    DEFAULT_DELTA,
    DEFAULT_EPSILON,
    DEFAULT_SEAL_GRACE_HOURS,
    ReleasePolicy,
    release_policy,
)

__all__ = [
    "EventDeclaration",
    "Settings",
    "Site",
    "SiteRegistry",
    "load_sites",
    "parse_sites",
    "starter_config",
    "token_digest",
]

_HEX64 = r"^[0-9a-f]{64}$"
SITE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class _EventFile(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(pattern=wire.NAME_PATTERN)]
    props: dict[
        Annotated[str, msgspec.Meta(pattern=wire.NAME_PATTERN)],
        list[Annotated[str, msgspec.Meta(pattern=wire.SLUG_PATTERN)]],
    ] = {}


class _SiteFile(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(pattern=SITE_ID_PATTERN)]
    write_token_sha256: Annotated[str, msgspec.Meta(pattern=_HEX64)]
    read_token_sha256: Annotated[str, msgspec.Meta(pattern=_HEX64)]
    timezone: str = "UTC"
    k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    hourly_days: Annotated[int, msgspec.Meta(ge=1, le=3660)] = 30
    keep_days: Annotated[int, msgspec.Meta(ge=1, le=36600)] = 760
    # Sealed noise (see README, "Privacy"): the guarantee per protected unit.
    epsilon: Annotated[float, msgspec.Meta(gt=0, le=20)] = DEFAULT_EPSILON
    delta: Annotated[float, msgspec.Meta(gt=0, le=1e-3)] = DEFAULT_DELTA
    seal_grace_hours: Annotated[int, msgspec.Meta(ge=1, le=48)] = DEFAULT_SEAL_GRACE_HOURS
    # The explicit opt-out: exact counts, released live, with per-response suppression only.
    exact_counts: bool = False
    # Anyone may read this site's dashboard without a token (what /v1/stats releases).
    public_dashboard: bool = False
    events: list[_EventFile] = []


class _ConfigFile(msgspec.Struct, forbid_unknown_fields=True):
    sites: Annotated[list[_SiteFile], msgspec.Meta(min_length=1)]


@dataclass(frozen=True, slots=True)
class EventDeclaration:
    name: str
    props: Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Site:
    """One site as the collector knows it. Tokens exist here only as SHA-256 digests."""

    id: str
    timezone: ZoneInfo
    write_token_sha256: bytes
    read_token_sha256: bytes
    k: int = 5
    hourly_days: int = 30
    keep_days: int = 760
    events: Mapping[str, EventDeclaration] = field(default_factory=dict)
    epsilon: float = DEFAULT_EPSILON
    delta: float = DEFAULT_DELTA
    seal_grace_hours: int = DEFAULT_SEAL_GRACE_HOURS
    exact_counts: bool = False
    public_dashboard: bool = False

    @property
    def hourly_seconds(self) -> int:
        return self.hourly_days * 86400

    @property
    def policy(self) -> ReleasePolicy:
        """How this site's numbers are released (cached per distinct parameter set)."""
        return release_policy(
            noise=not self.exact_counts,
            epsilon=self.epsilon,
            delta=self.delta,
            k=self.k,
            seal_grace_hours=self.seal_grace_hours,
        )


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class SiteRegistry:
    """Finds the site a bearer token belongs to, in time that does not depend on the token."""

    def __init__(self, sites: list[Site]) -> None:
        self._sites = {site.id: site for site in sites}

    def replace(self, other: SiteRegistry) -> None:
        """Take ``other``'s sites (a reload). One assignment, so a request in flight sees
        either the old sites or the new ones, never a mix."""
        self._sites = dict(other._sites)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._sites.values())

    def __len__(self) -> int:
        return len(self._sites)

    def get(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def by_write_token(self, token: str) -> Site | None:
        return self._match(token, write=True)

    def by_read_token(self, token: str) -> Site | None:
        return self._match(token, write=False)

    def _match(self, token: str, *, write: bool) -> Site | None:
        digest = token_digest(token)
        found: Site | None = None
        # Compare against every site, without stopping early, so timing reveals neither
        # which site matched nor how many prefix bytes of a guess were right.
        for site in self._sites.values():
            expected = site.write_token_sha256 if write else site.read_token_sha256
            if hmac.compare_digest(digest, expected) and found is None:
                found = site
        return found


def load_sites(path: str | os.PathLike[str]) -> SiteRegistry:
    """Read and check the site file; any problem raises ConfigError naming file and key."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(str(file), "", f"cannot read the file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), "", f"not valid UTF-8: {exc}") from None
    return parse_sites(text, str(file))


def parse_sites(text: str, file: str) -> SiteRegistry:
    """Check a site file's text (``file`` names it in errors) and build the registry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = f"not valid TOML: {exc}"
        if _SINGLE_SITES_HEADER.search(text):
            # Two or more [sites] tables: TOML's own words ("Cannot declare ('sites',)
            # twice") do not say what to write instead.
            problem += f"; {_SITES_HINT}"
        raise ConfigError(file, "", problem) from None
    _check_usual_mistakes(data, file)
    try:
        parsed = msgspec.convert(data, _ConfigFile)
    except msgspec.ValidationError as exc:
        message, path = split_validation_error(str(exc))
        raise ConfigError(file, _toml_key(path), message) from None
    sites: list[Site] = []
    seen_ids: set[str] = set()
    seen_tokens: set[str] = set()
    for index, entry in enumerate(parsed.sites):
        prefix = f"sites[{index}]"
        if entry.id in seen_ids:
            raise ConfigError(str(file), f"{prefix}.id", f"duplicate site id {entry.id!r}")
        seen_ids.add(entry.id)
        for key in ("write_token_sha256", "read_token_sha256"):
            digest = getattr(entry, key)
            if digest in seen_tokens:
                raise ConfigError(str(file), f"{prefix}.{key}", "token digest is used twice")
            seen_tokens.add(digest)
        try:
            zone = ZoneInfo(entry.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                str(file), f"{prefix}.timezone", f"unknown IANA time zone {entry.timezone!r}"
            ) from None
        if entry.keep_days < entry.hourly_days:
            raise ConfigError(str(file), f"{prefix}.keep_days", "must be at least hourly_days")
        events: dict[str, EventDeclaration] = {}
        for event_index, event in enumerate(entry.events):
            if event.name in events:
                raise ConfigError(
                    str(file),
                    f"{prefix}.events[{event_index}].name",
                    f"event {event.name!r} declared twice",
                )
            events[event.name] = EventDeclaration(
                event.name, {name: frozenset(values) for name, values in event.props.items()}
            )
        sites.append(
            Site(
                id=entry.id,
                timezone=zone,
                write_token_sha256=bytes.fromhex(entry.write_token_sha256),
                read_token_sha256=bytes.fromhex(entry.read_token_sha256),
                k=entry.k,
                hourly_days=entry.hourly_days,
                keep_days=entry.keep_days,
                events=events,
                epsilon=entry.epsilon,
                delta=entry.delta,
                seal_grace_hours=entry.seal_grace_hours,
                exact_counts=entry.exact_counts,
                public_dashboard=entry.public_dashboard,
            )
        )
    return SiteRegistry(sites)


_DIGEST_KEYS = ("write_token_sha256", "read_token_sha256")


_SITES_HINT: Final = (
    "[sites] declares one table; each site needs its own [[sites]] header "
    "(double brackets), as in the file `headcount-collector init` writes"
)
_SINGLE_SITES_HEADER: Final = re.compile(r"^[ \t]*\[[ \t]*sites[ \t]*\][ \t]*(#.*)?$", re.M)


def _check_usual_mistakes(data: dict[str, object], file: str) -> None:
    """Name the mistakes people actually make, before the generic schema message."""
    sites = data.get("sites")
    if isinstance(sites, dict):
        raise ConfigError(
            file,
            "sites",
            _SITES_HINT,
        )
    if not isinstance(sites, list):
        return
    for index, entry in enumerate(sites):
        if not isinstance(entry, dict):
            continue
        for key in _DIGEST_KEYS:
            value = entry.get(key)
            if isinstance(value, str) and not re.fullmatch(_HEX64, value):
                # Never echo the value: it may be a live token.
                looks_raw = value.startswith(("hcw_", "hcr_")) or not re.fullmatch(
                    r"[0-9a-fA-F]*", value
                )
                hint = (
                    "this looks like a raw token; the file holds only its SHA-256 digest: "
                    'printf %s "$TOKEN" | headcount-collector digest'
                    if looks_raw
                    else "expected 64 lower-case hex characters (a SHA-256 digest)"
                )
                raise ConfigError(file, f"sites[{index}].{key}", hint)
        for wrong, right in (
            ("write_token", "write_token_sha256"),
            ("read_token", "read_token_sha256"),
        ):
            if wrong in entry:
                raise ConfigError(
                    file,
                    f"sites[{index}].{wrong}",
                    f"the file holds only digests: use {right} = the token's SHA-256 digest "
                    "(headcount-collector digest), never the token itself",
                )


def _toml_key(json_path: str) -> str:
    return re.sub(r"^\$\.?", "", json_path) or "-"


def starter_config(site_id: str = "mysite", timezone: str = "UTC") -> tuple[str, str, str]:
    """A starter site file and the fresh tokens it was made for: (toml, write, read)."""
    write_token = "hcw_" + secrets.token_urlsafe(24)
    read_token = "hcr_" + secrets.token_urlsafe(24)
    text = f"""# Headcount collector sites. Tokens are stored only as SHA-256 digests.
[[sites]]
id = "{site_id}"
timezone = "{timezone}"
write_token_sha256 = "{token_digest(write_token).hex()}"
read_token_sha256 = "{token_digest(read_token).hex()}"
# Released numbers carry sealed noise: each hour's and day's cells are drawn once when
# the period is over (plus seal_grace_hours) and never change. epsilon and delta state
# the guarantee per request (README, "Privacy"); smaller epsilon = more noise.
epsilon = 7.0
delta = 1e-6
seal_grace_hours = 2
# A cell is also never shown below k. exact_counts = true opts out of noise entirely.
k = 5
# Hourly rows are kept this many days, then rolled up into daily rows.
hourly_days = 30
# Daily rows are deleted after this many days (about 25 months).
keep_days = 760

# Declare each custom event and the property values it may carry; anything else is
# rejected at ingest.
[[sites.events]]
name = "signup"
props = {{ plan = ["free", "pro"] }}
"""
    return text, write_token, read_token


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the collector process needs, from the CLI or from code."""

    config_path: str
    db_url: str = "sqlite:///./headcount.sqlite3"
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    access_log: bool = False
    # How often each worker rolls up and purges old rows (seconds).
    retention_interval: float = 3600.0
    # Distinct keys a site may create per table and hour; the rest fold into (other), so
    # one write token cannot fill the database (and it shows in keys_spilled metrics).
    max_keys_per_hour: int = 10_000
    # How often each worker looks for hours and days that are due to be sealed (seconds).
    seal_interval: float = 60.0
    # How long batch ids are remembered so a retry is recognised (seconds, >= 48 h).
    # Records older than this (less an hour) are refused, so no retry outlives its id.
    dedupe_seconds: int = 7 * 86400
    # Upper bound on batches merged into one group commit.
    max_group_batches: int = 512
    log_level: str = "info"
    # Re-read the site file on SIGHUP (the CLI's serve; needs the main thread).
    reload_on_sighup: bool = False
    # Prometheus metrics: on the main port at /metrics for this token's SHA-256 digest
    # (hex), and/or on a port of their own (the CLI serves that one).
    metrics_token_sha256: str = ""
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, not {self.port}")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.metrics_token_sha256 and not re.fullmatch(_HEX64, self.metrics_token_sha256):
            raise ValueError("metrics_token_sha256 must be a SHA-256 digest in hex")
        if not 0 <= self.metrics_port < 65536:
            raise ValueError(f"metrics_port must be 0-65535, not {self.metrics_port}")
        if not self.retention_interval > 0:
            raise ValueError("retention_interval must be a positive number of seconds")
        if self.dedupe_seconds < 48 * 3600:
            raise ValueError("dedupe_seconds must cover at least 48 hours")
        if self.max_keys_per_hour < 1000:
            # Below that, the secret offset that hides the fold point is too small.
            raise ValueError("max_keys_per_hour must be at least 1000")
