"""Options: arguments, then HEADCOUNT_* environment variables, then defaults."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import msgspec
import pytest

from headcount import (
    ConfigurationError,
    ConfigurationWarning,
    HeadcountError,
    Tracker,
    TrackerSettings,
)
from headcount._settings import option_names


def test_every_tracker_argument_is_a_settings_field_of_the_same_name() -> None:
    parameters = inspect.signature(Tracker).parameters
    keywords = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert list(parameters)[:2] == ["endpoint", "write_token"]
    assert {"endpoint", "write_token", *keywords} == {*option_names(), "clock"}


def test_a_mistyped_option_name_or_value_fails_type_checking(tmp_path: Path) -> None:
    snippet = tmp_path / "app.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from headcount import Tracker

            Tracker("http://c.test", "t", flush_interval=5, visits_store="memory")
            Tracker("http://c.test", "t", flush_intervall=5)
            Tracker("http://c.test", "t", visit_gap="30 minutes")
            """
        )
    )
    config = tmp_path / "mypy.ini"
    # Only the Tracker's signature matters: third-party packages are not checked again.
    config.write_text(
        "[mypy]\nstrict = True\nincremental = False\nfollow_imports = silent\n"
        "[mypy-httpx.*,httpcore.*,anyio.*,msgspec.*,redis.*]\nfollow_imports = skip\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), str(snippet)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(errors) == 2, result.stdout
    assert 'Unexpected keyword argument "flush_intervall"' in errors[0]
    assert '"visit_gap"' in errors[1]
    assert ":5:" in errors[0]
    assert ":6:" in errors[1]


def test_arguments_beat_environment_beats_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADCOUNT_ENDPOINT", "https://env.example")
    monkeypatch.setenv("HEADCOUNT_WRITE_TOKEN", "env-token")
    monkeypatch.setenv("HEADCOUNT_FLUSH_INTERVAL", "30")
    monkeypatch.setenv("HEADCOUNT_MAX_KEYS", "500")
    monkeypatch.setenv("HEADCOUNT_EXCLUDE_ROUTES", "/a, /b*")
    monkeypatch.setenv("HEADCOUNT_SEND_SCHEDULE", "hourly")
    t = Tracker(flush_interval=5)
    assert t.settings.endpoint == "https://env.example"
    assert t.settings.write_token == "env-token"
    assert t.settings.flush_interval == 5.0
    assert t.settings.max_keys == 500
    assert t.settings.exclude_routes == ("/a", "/b*")
    assert t.settings.send_schedule == "hourly"
    assert t.settings.shutdown_timeout == 2.0  # default
    assert t.settings.ingest_url == "https://env.example/v1/ingest"


def test_from_options_takes_any_case_like_framework_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADCOUNT_ENDPOINT", raising=False)
    t = Tracker.from_options(
        {"ENDPOINT": "http://c.test/", "WRITE_TOKEN": "tok", "Max_Keys": 7, "ENABLED": True}
    )
    assert t.settings.max_keys == 7
    assert t.settings.ingest_url == "http://c.test/v1/ingest"


def test_write_token_is_not_in_repr() -> None:
    t = Tracker("http://c.test", "super-secret-token")
    assert "super-secret-token" not in repr(t.settings)
    assert "super-secret-token" not in repr(t)


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"flush_interval": "60"}, TypeError, "flush_interval"),
        ({"flush_interval": -1}, ValueError, "flush_interval"),
        ({"flush_interval": float("nan")}, ValueError, "flush_interval"),
        ({"max_keys": 1.5}, TypeError, "max_keys"),
        ({"max_keys": True}, TypeError, "max_keys"),
        ({"max_keys": 0}, ValueError, "max_keys"),
        ({"enabled": "yes"}, TypeError, "enabled"),
        ({"send_schedule": "daily"}, ValueError, "send_schedule"),
        ({"exclude_routes": "/admin"}, TypeError, "exclude_routes"),
        ({"exclude_routes": ["/ok", "admin"]}, ValueError, "exclude_routes[1]"),
        ({"endpoint": "ftp://c.test"}, ValueError, "endpoint"),
        ({"endpoint": "http://c.test/?x=1"}, ValueError, "endpoint"),
        ({"endpoint": 42}, TypeError, "endpoint"),
        ({"write_token": "has space"}, ValueError, "write_token"),
        ({"write_token": "to\x01k"}, ValueError, "write_token"),
        ({"write_token": "tök"}, ValueError, "write_token"),
        ({"transport": "nope"}, TypeError, "transport"),
        ({"trusted_proxies": ["10.0.0.0/8", 3]}, TypeError, "trusted_proxies[1]"),
        ({"trusted_proxies": ["not-an-address"]}, ValueError, "trusted_proxies"),
        ({"visits_store": "mysql://db"}, ValueError, "visits_store"),
        ({"visits_redis_prefix": ""}, ValueError, "visits_redis_prefix"),
        ({"no_such_option": 1}, ValueError, "no_such_option"),
    ],
)  # fmt: skip
def test_bad_options_raise_a_configuration_error_naming_the_option(
    options: dict[str, object], error: type[Exception], named: str
) -> None:
    # Framework configuration (Flask's config, Django's HEADCOUNT dict) takes this path;
    # keyword arguments reach the same conversion.
    base: dict[str, object] = {"ENDPOINT": "http://c.test", "WRITE_TOKEN": "tok"}
    with pytest.raises(ConfigurationError) as info:
        Tracker.from_options({**base, **{name.upper(): v for name, v in options.items()}})
    assert isinstance(info.value, error)
    assert isinstance(info.value, HeadcountError)
    assert named in str(info.value)


def test_keyword_arguments_are_checked_like_configuration() -> None:
    with pytest.raises(ConfigurationError, match="flush_interval"):
        Tracker("http://c.test", "tok", flush_interval=-1)
    with pytest.raises(TypeError, match="visit_gap"):
        Tracker("http://c.test", "tok", visit_gap="30 minutes")  # type: ignore[arg-type]


def test_settings_are_one_struct_that_msgspec_converts() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(202))
    settings = msgspec.convert(
        {"endpoint": "http://c.test/v1/ingest", "max_keys": 5, "transport": transport},
        TrackerSettings,
    )
    assert settings.endpoint == "http://c.test"
    assert settings.transport is transport
    tracker = Tracker("http://c.test", "tok", max_keys=5, transport=transport)
    assert tracker.settings == msgspec.structs.replace(settings, write_token="tok")


def test_missing_endpoint_or_token_raises_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADCOUNT_ENDPOINT", raising=False)
    monkeypatch.delenv("HEADCOUNT_WRITE_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="endpoint"):
        Tracker()
    with pytest.raises(ConfigurationError, match="write_token"):
        Tracker("http://c.test")
    assert Tracker(enabled=False).settings.enabled is False


def test_a_read_token_given_as_the_write_token_is_refused_at_once() -> None:
    with pytest.raises(ConfigurationError, match=r"read token \(hcr_\.\.\.\)") as refused:
        Tracker("http://c.test", "hcr_secret-read-token-value")
    assert "secret-read-token-value" not in str(refused.value)
    assert Tracker("http://c.test", "hcw_write", enabled=False).settings.enabled is False


@pytest.mark.parametrize(
    ("variable", "value", "field", "default"),
    [
        ("HEADCOUNT_FLUSH_INTERVAL", "soon", "flush_interval", 60.0),
        ("HEADCOUNT_FLUSH_INTERVAL", "-5", "flush_interval", 60.0),
        ("HEADCOUNT_MAX_KEYS", "lots", "max_keys", 10_000),
        ("HEADCOUNT_TRUSTED_PROXIES", "10.0.0.1, nowhere", "trusted_proxies", None),
        ("HEADCOUNT_ENABLED", "perhaps", "enabled", True),
        ("HEADCOUNT_SEND_SCHEDULE", "weekly", "send_schedule", "hourly"),
        ("HEADCOUNT_EXCLUDE_ROUTES", "admin", "exclude_routes", None),
    ],
)
def test_bad_environment_values_warn_and_fall_back(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, default: object
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.warns(ConfigurationWarning, match=variable):
        t = Tracker("http://c.test", "tok")
    expected = default if default is not None else ()
    assert getattr(t.settings, field) == expected


def test_environment_values_are_converted_to_their_fields_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADCOUNT_VISIT_GAP", " 600 ")
    monkeypatch.setenv("HEADCOUNT_MAX_VISITS", "1e3")
    monkeypatch.setenv("HEADCOUNT_VISITS", "no")
    monkeypatch.setenv("HEADCOUNT_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    settings = Tracker("http://c.test", "tok").settings
    assert (settings.visit_gap, settings.max_visits, settings.visits) == (600.0, 1000, False)
    assert settings.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16")


def test_environment_can_disable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADCOUNT_ENABLED", "off")
    assert Tracker().settings.enabled is False


def test_exclude_routes_from_the_environment_extend_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from headcount._settings import DEFAULT_EXCLUDE_ROUTES

    monkeypatch.setenv("HEADCOUNT_EXCLUDE_ROUTES", "/internal*, /status")
    t = Tracker("http://c.test", "tok")
    assert t.settings.excluded_routes == (*DEFAULT_EXCLUDE_ROUTES, "/internal*", "/status")
    monkeypatch.setenv("HEADCOUNT_EXCLUDE_DEFAULT_ROUTES", "false")
    t = Tracker("http://c.test", "tok")
    assert t.settings.excluded_routes == ("/internal*", "/status")
    # A route listed again is kept once.
    t = Tracker("http://c.test", "tok", exclude_routes=["/healthz"], exclude_default_routes=True)
    assert t.settings.excluded_routes == DEFAULT_EXCLUDE_ROUTES


def test_exclude_default_routes_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="exclude_default_routes"):
        Tracker("http://c.test", "tok", exclude_default_routes="no")  # type: ignore[arg-type]
