"""Text log formats: nginx ``log_format`` strings and Apache ``LogFormat`` strings.

The named formats (combined, common, combined-vhost) are format strings too, so every
text format goes through one compiler: each variable becomes a regex group and the
fields the importer needs are read by group number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

from headcount.logimport._line import (
    LogLine,
    parse_iso_time,
    parse_local_time,
    parse_seconds,
    parse_unix_time,
)

__all__ = ["NAMED_TEXT_FORMATS", "Scan", "TextFormat", "text_field"]

NAMED_TEXT_FORMATS: Final = {
    "combined": (
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent"'
    ),
    "common": '%h %l %u %t "%r" %>s %b',
    "combined-vhost": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
}

# Variable (nginx name, or Apache directive) -> the field it fills.
_FIELDS: Final = {
    "remote_addr": "client",
    "%h": "client",
    "%a": "client",
    "http_x_forwarded_for": "forwarded_for",
    "%{x-forwarded-for}i": "forwarded_for",
    "time_local": "time_local",
    "%t": "time_local",
    "time_iso8601": "time_iso",
    "msec": "time_unix",
    "request": "request",
    "%r": "request",
    "request_method": "method",
    "%m": "method",
    "request_uri": "target",
    "uri": "path",
    "%U": "path",
    "args": "args",
    "query_string": "args",
    "%q": "query",
    "status": "status",
    "%>s": "status",
    "%s": "status",
    "http_referer": "referer",
    "%{referer}i": "referer",
    "http_user_agent": "user_agent",
    "%{user-agent}i": "user_agent",
    "sent_http_content_type": "content_type",
    "%{content-type}o": "content_type",
    "request_time": "seconds",
    "%T": "seconds",
    "%D": "microseconds",
    "host": "host",
    "http_host": "host",
    "server_name": "host",
    "%v": "host",
    "%V": "host",
    "%{host}i": "host",
}
_VARIABLE: Final = re.compile(r"\$([a-z_0-9]+)|\$\{([a-z_0-9]+)\}|(%(?:\{[^}]*\})?[<>]?[a-zA-Z])")
# Unrolled (runs of plain characters, then one escape): no per-character alternation.
_QUOTED: Final = r'([^"\\]*(?:\\.[^"\\]*)*)'
_BRACKETED: Final = r"([^\]]*)"
_BARE: Final = r"(\S*)"
_ESCAPE: Final = re.compile(r"\\x([0-9A-Fa-f]{2})|\\(.)")
_TEXT_FIELDS: Final = (
    "client", "forwarded_for", "referer", "user_agent", "content_type", "host"
)  # fmt: skip
_NEEDED_TIME: Final = ("time_local", "time_iso", "time_unix")
_POSITIONAL: Final = (
    "request", "method", "target", "path", "args", "query", "status",
    "time_local", "time_iso", "time_unix", "seconds", "microseconds",
)  # fmt: skip


# The fields a Scan reads, in the order its ``groups`` give them.
SCAN_FIELDS: Final = (
    "request", "status", "time", "seconds",
    "client", "forwarded_for", "referer", "user_agent", "content_type", "host",
)  # fmt: skip


class Scan(NamedTuple):
    """A format's raw fields in one call, for the importer's per-line loop: ``match``
    then ``match.group(*groups)`` gives the SCAN_FIELDS' text as the line holds it
    (unescaped, "-" kept; "" for a field the format lacks). The importer then converts
    each distinct value once, with the same functions as ``parse``, and falls back to
    ``parse`` for any line that does not convert, so both read a line alike."""

    match: Callable[[str], re.Match[str] | None]
    groups: tuple[int, ...]
    time: Callable[[str], float]
    seconds_scale: float


def _unescape(value: str) -> str:
    """nginx writes ``"`` and control bytes as ``\\xHH``; Apache as ``\\"`` and ``\\xhh``."""
    if "\\" not in value:
        return value
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), value)


class TextFormat:
    """A compiled format string; ``parse`` turns one line into a LogLine or raises
    ValueError saying what did not fit."""

    def __init__(self, spec: str) -> None:
        pattern: list[str] = []
        self._groups: dict[str, int] = {}
        position = 0
        for group, match in enumerate(_VARIABLE.finditer(spec), 1):
            literal = spec[position : match.start()]
            pattern.append(re.escape(literal))
            name = match.group(1) or match.group(2) or match.group(3)
            if name.startswith("%{"):
                name = name.lower()  # header names are case-insensitive
            before = spec[match.start() - 1] if match.start() else ""
            if before == '"':
                pattern.append(_QUOTED)
            elif before == "[":
                pattern.append(_BRACKETED)
            elif _FIELDS.get(name) == "time_local":
                # Apache's %t brings its own brackets.
                pattern.append(r"\[([^\]]*)\]")
            else:
                pattern.append(_BARE)
            field = _FIELDS.get(name)
            if field is not None:
                self._groups.setdefault(field, group)
            position = match.end()
        pattern.append(re.escape(spec[position:]))
        # An empty group that always matches, read for a field the format lacks.
        pattern.append("()")
        self._regex = re.compile("".join(pattern))
        empty = self._regex.groups
        fields = self._groups
        self._text_groups = tuple(fields.get(name) for name in _TEXT_FIELDS)
        if not any(name in fields for name in _NEEDED_TIME):
            raise ValueError("the format has no time ($time_local, $time_iso8601, $msec or %t)")
        if "status" not in fields:
            raise ValueError("the format has no status ($status or %>s)")
        if "request" not in fields and not (
            "method" in fields and fields.keys() & {"target", "path"}
        ):
            raise ValueError("the format has no request line ($request or %r)")

        # Positions in the match's groups, -1 where the format has no such field: read
        # once here so that a line costs one regex match and a few index lookups.
        self._match = self._regex.match
        self._at = {name: fields.get(name, 0) - 1 for name in _POSITIONAL}
        self._text_at = tuple(fields.get(name, 0) - 1 for name in _TEXT_FIELDS)
        self.scan = self._scan(empty)

    def __call__(self, line: str) -> LogLine:
        return self.parse(line)

    def _scan(self, empty: int) -> Scan | None:
        """The fast reading of this format, for formats that log the request line and
        one time; None for the rest (they are read with ``parse``)."""
        fields = self._groups
        if "request" not in fields:
            return None
        if "time_local" in fields:
            time, at = parse_local_time, fields["time_local"]
        elif "time_iso" in fields:
            time, at = parse_iso_time, fields["time_iso"]
        else:
            time, at = parse_unix_time, fields["time_unix"]
        scale = 1.0
        seconds = fields.get("seconds")
        if seconds is None and "microseconds" in fields:
            seconds, scale = fields["microseconds"], 1e-6
        groups = [fields.get(name, empty) for name in SCAN_FIELDS]
        groups[SCAN_FIELDS.index("time")] = at
        groups[SCAN_FIELDS.index("seconds")] = empty if seconds is None else seconds
        return Scan(self._match, tuple(groups), time, scale)

    def parse(self, line: str) -> LogLine:
        match = self._match(line)
        if match is None:
            raise ValueError("the line does not match the format")
        values = match.groups()
        at = self._at
        index = at["request"]
        if index >= 0:
            parts = values[index].split(" ", 2)
            if len(parts) < 2:
                raise ValueError("the request line has no method and target")
            method, target = parts[0], parts[1]
        else:
            method = values[at["method"]]
            index = at["target"]
            if index >= 0:
                target = values[index]
            else:
                target = values[at["path"]]
                index = at["args"]
                if index >= 0 and values[index] not in ("", "-"):
                    target += "?" + values[index]
                index = at["query"]
                if index >= 0:
                    target += values[index]
        status_text = values[at["status"]]
        if len(status_text) != 3 or not status_text.isdigit():
            raise ValueError("the status is not a three-digit code")
        index = at["time_local"]
        if index >= 0:
            time = parse_local_time(values[index])
        else:
            index = at["time_iso"]
            if index >= 0:
                time = parse_iso_time(values[index])
            else:
                time = parse_unix_time(values[at["time_unix"]])
        elapsed = None
        index = at["seconds"]
        if index >= 0:
            elapsed = parse_seconds(values[index])
        else:
            index = at["microseconds"]
            if index >= 0:
                elapsed = parse_seconds(values[index], 1e-6)
        client, forwarded, referer, agent, content_type, host = [
            None if index < 0 else text_field(values[index]) for index in self._text_at
        ]
        return LogLine(
            time,
            method,
            target,
            int(status_text),
            client,
            forwarded,
            referer,
            agent,
            content_type,
            elapsed,
            host,
        )


def text_field(value: str) -> str | None:
    """A logged text value as a request would have had it: unescaped, and None for "-"
    or nothing."""
    if "\\" in value:
        value = _unescape(value)
    return None if value == "-" or not value else value
