"""Options: arguments, then HEADCOUNT_* environment variables, then defaults."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from headcount import ConfigurationError, ConfigurationWarning, HeadcountError, Tracker
from headcount._settings import _OPTIONS, TrackerSettings


def test_every_option_is_a_settings_field() -> None:
    fields = {f.name for f in dataclasses.fields(TrackerSettings)}
    assert set(_OPTIONS) == fields


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
    ("options", "error"),
    [
        ({"flush_interval": "60"}, TypeError),
        ({"flush_interval": -1}, ValueError),
        ({"flush_interval": float("nan")}, ValueError),
        ({"max_keys": 1.5}, TypeError),
        ({"max_keys": True}, TypeError),
        ({"max_keys": 0}, ValueError),
        ({"enabled": "yes"}, TypeError),
        ({"send_schedule": "daily"}, ValueError),
        ({"exclude_routes": "/admin"}, TypeError),
        ({"exclude_routes": ["admin"]}, ValueError),
        ({"endpoint": "ftp://c.test"}, ValueError),
        ({"endpoint": "http://c.test/?x=1"}, ValueError),
        ({"endpoint": 42}, TypeError),
        ({"write_token": "has space"}, ValueError),
        ({"write_token": "to\x01k"}, ValueError),
        ({"write_token": "tök"}, ValueError),
        ({"transport": "nope"}, TypeError),
        ({"http_client": 3}, TypeError),
        ({"no_such_option": 1}, ValueError),
        ({"transport": httpx.MockTransport(lambda r: httpx.Response(202)),
          "http_client": httpx.Client}, ValueError),
    ],
)  # fmt: skip
def test_bad_arguments_raise_configuration_error(
    options: dict[str, object], error: type[Exception]
) -> None:
    base: dict[str, object] = {"endpoint": "http://c.test", "write_token": "tok"}
    with pytest.raises(ConfigurationError) as info:
        Tracker(**{**base, **options})  # type: ignore[arg-type]  # wrong on purpose
    assert isinstance(info.value, error)
    assert isinstance(info.value, HeadcountError)


def test_missing_endpoint_or_token_raises_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADCOUNT_ENDPOINT", raising=False)
    monkeypatch.delenv("HEADCOUNT_WRITE_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="endpoint"):
        Tracker()
    with pytest.raises(ConfigurationError, match="write_token"):
        Tracker("http://c.test")
    assert Tracker(enabled=False).settings.enabled is False


@pytest.mark.parametrize(
    ("variable", "value", "field", "default"),
    [
        ("HEADCOUNT_FLUSH_INTERVAL", "soon", "flush_interval", 60.0),
        ("HEADCOUNT_FLUSH_INTERVAL", "-5", "flush_interval", 60.0),
        ("HEADCOUNT_MAX_KEYS", "1e3", "max_keys", 10_000),
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
        Tracker("http://c.test", "tok", exclude_default_routes="no")
