"""JSON log formats: nginx ``log_format ... escape=json`` objects and Caddy's access log."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from headcount.logimport._line import (
    LogLine,
    checked_time,
    parse_iso_time,
    parse_local_time,
    parse_seconds,
    parse_unix_time,
)

__all__ = ["parse_caddy", "parse_nginx_json"]

_decode = msgspec.json.Decoder(dict[str, Any]).decode

# An escape=json log_format names its keys freely; these are the nginx variable names
# (the usual choice, `"remote_addr": "$remote_addr"`) and the common short aliases.
_KEYS: Final = {
    "client": ("remote_addr", "client", "ip", "client_ip"),
    "forwarded_for": ("http_x_forwarded_for", "x_forwarded_for", "forwarded_for"),
    "request": ("request",),
    "method": ("request_method", "method"),
    "target": ("request_uri", "uri", "path"),
    "status": ("status",),
    "referer": ("http_referer", "referer", "referrer"),
    "user_agent": ("http_user_agent", "user_agent", "agent"),
    "content_type": ("sent_http_content_type", "content_type"),
    "seconds": ("request_time", "duration"),
    "host": ("host", "http_host", "server_name"),
}


def _first(obj: Mapping[str, Any], field: str) -> Any:
    for key in _KEYS[field]:
        value = obj.get(key)
        if value is not None and value not in ("", "-"):
            return value
    return None


def _text(obj: Mapping[str, Any], field: str) -> str | None:
    value = _first(obj, field)
    return None if value is None else str(value)


def _object(line: str) -> dict[str, Any]:
    try:
        return _decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ValueError("the line is not a JSON object") from None


def parse_nginx_json(line: str) -> LogLine:
    obj = _object(line)
    request = _text(obj, "request")
    if request is not None:
        parts = request.split(" ")
        if len(parts) < 2:
            raise ValueError("the request line has no method and target")
        method, target = parts[0], parts[1]
    else:
        method_value, target_value = _text(obj, "method"), _text(obj, "target")
        if method_value is None or target_value is None:
            raise ValueError("no request (or request_method and request_uri) key")
        method, target = method_value, target_value
    if "time_iso8601" in obj:
        time = parse_iso_time(str(obj["time_iso8601"]))
    elif "time_local" in obj:
        time = parse_local_time(str(obj["time_local"]))
    elif "msec" in obj:
        time = parse_unix_time(str(obj["msec"]))
    else:
        raise ValueError("no time_iso8601, time_local or msec key")
    seconds = _first(obj, "seconds")
    return LogLine(
        time,
        method,
        target,
        _status(_first(obj, "status")),
        client_addr=_text(obj, "client"),
        forwarded_for=_text(obj, "forwarded_for"),
        referer=_text(obj, "referer"),
        user_agent=_text(obj, "user_agent"),
        content_type=_text(obj, "content_type"),
        elapsed=None if seconds is None else parse_seconds(str(seconds)),
        host=_text(obj, "host"),
    )


def _status(value: Any) -> int:
    try:
        status = int(value)
    except (TypeError, ValueError):
        raise ValueError("no numeric status") from None
    if not 100 <= status <= 999:
        raise ValueError("the status is not a three-digit code")
    return status


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    values = headers.get(name)
    if isinstance(values, list) and values:
        return str(values[0])
    return None


def parse_caddy(line: str) -> LogLine:
    """One line of Caddy's JSON access log (``http.log.access``); other loggers' lines
    in the same file raise like any line that does not fit."""
    obj = _object(line)
    request = obj.get("request")
    if not isinstance(request, dict) or "uri" not in request or "method" not in request:
        raise ValueError("not an access-log entry: no request.method and request.uri")
    stamp = obj.get("ts")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        time = checked_time(float(stamp))
    elif isinstance(stamp, str):
        time = parse_iso_time(stamp)
    else:
        raise ValueError("no ts")
    headers = request.get("headers")
    duration = obj.get("duration")
    return LogLine(
        time,
        str(request["method"]),
        str(request["uri"]),
        _status(obj.get("status")),
        # client_ip is the address after Caddy applied its trusted_proxies.
        client_addr=str(request.get("client_ip") or request.get("remote_ip") or "") or None,
        referer=_header(headers, "Referer"),
        user_agent=_header(headers, "User-Agent"),
        content_type=_header(obj.get("resp_headers"), "Content-Type"),
        elapsed=(
            float(duration)
            if isinstance(duration, int | float) and 0 <= duration < math.inf
            else None
        ),
        host=str(request.get("host") or "") or None,
    )
