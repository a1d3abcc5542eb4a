"""Text log formats: nginx ``log_format`` strings and Apache ``LogFormat`` strings.

The named formats (combined, common, combined-vhost) are format strings too, so every
text format goes through one compiler: each variable becomes a regex group and the
fields the importer needs are read by group number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter
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
    """A format's raw fields in one call, for the importer's per-line loop: ``read``
    gives the SCAN_FIELDS' text as the format's regex captures it (not unescaped, "-"
    kept; "" for a field the format lacks), or None where the regex does not match.
    The importer then converts each distinct value once, with ``time`` and the same
    functions as ``parse``, and falls back to ``parse`` for any line that does not
    convert, so both read a line alike."""

    read: Callable[[str], Sequence[str] | None]
    time: Callable[[str], float]
    seconds_scale: float


class _Variable(NamedTuple):
    literal: str  # the format's text before the variable
    group: int
    kind: str  # "quoted", "bracketed", "brackets" (%t brings its own) or "bare"
    field: str | None


_TIME: Final = SCAN_FIELDS.index("time")
# Private-use characters: placeholders for a format's variables in its own text.
_MARK: Final = 0xE000


class _SplitPlan(NamedTuple):
    read: Callable[[str], Sequence[str] | None]
    # The time is read with its brackets ("[" + the regex's group + "]"): whether the
    # group holds no "]" is checked once per distinct time, by ``_bracketed_time``.
    bracketed_time: bool


def _split_plan(
    variables: list[_Variable], tail: str, groups: tuple[int, ...], time_group: int
) -> _SplitPlan | None:
    """A reading of the format's lines with ``str.split`` instead of its regex, for
    formats whose fields are separated by single spaces and quotes (combined, common
    and ``log:`` formats like them); None for any other format.

    The plan is the format's own text with a placeholder for each variable, split as a
    line will be: on ``"``, then the text outside quotes (joined by ``"``) on whitespace.
    A line takes this way only when it provably holds what the regex would capture:
    no backslash (so a quoted value is the text between two quotes), as many quotes as
    the format, single spaces and no other whitespace outside quotes (where ``\\S*``
    stops: ``str.split()`` and ``\\s`` agree on every character), and the format's
    literal text where the format has it. For any other line it returns None, and the
    regex reads it as before."""
    literal = "".join(variable.literal for variable in variables) + tail
    last_mark = _MARK + len(variables)
    if "\\" in literal or any(_MARK <= ord(char) <= last_mark for char in literal):
        return None
    marks: dict[str, _Variable] = {}
    template: list[str] = []
    date = zone = ""  # the pieces of a time in brackets: "[" + date, and zone + "]"
    for variable in variables:
        mark = chr(_MARK + variable.group)  # groups count from 1: _MARK stays free
        marks[mark] = variable
        template.append(variable.literal)
        if variable.kind == "bracketed" or variable.kind == "brackets":
            # Only a time splits into known pieces ("dd/Mon/yyyy:hh:mm:ss +zzzz" has
            # one space), and only the one the importer reads has its brackets checked.
            if variable.field != "time_local" or variable.group != time_group:
                return None
            date, zone = "[" + mark, chr(_MARK) + "]"
            time = f"{mark} {chr(_MARK)}"
            template.append(f"[{time}]" if variable.kind == "brackets" else time)
        else:
            template.append(mark)
    template.append(tail)
    parts = "".join(template).split('"')
    unquoted = '"'.join(parts[::2])
    pieces = unquoted.split()
    if " ".join(pieces) != unquoted:
        return None  # other whitespace than single spaces between fields
    at: dict[int, int] = {}  # group -> where its text is in pieces + parts
    for index in range(1, len(parts), 2):
        quoted = marks.get(parts[index])
        if quoted is None or quoted.kind != "quoted":
            return None
        at[quoted.group] = len(pieces) + index
    literals: list[int] = []  # where the format has text of its own
    for index, piece in enumerate(pieces):
        bare = marks.get(piece)
        if bare is not None and bare.kind == "bare":
            at[bare.group] = index
        elif piece == date:
            at[time_group] = index
        elif piece == zone and at.get(time_group) == index - 1:
            pass
        elif not any(_MARK <= ord(char) <= last_mark for char in piece):
            literals.append(index)
        else:
            return None  # a variable with text around it, or two run together
    if len(at) != len(variables) or not literals:
        return None
    empty = len(pieces) + len(parts)  # the "" appended to every reading
    fields = itemgetter(*(at.get(group, empty) for group in groups))
    literal_at = itemgetter(*literals)
    expected = literal_at(pieces)  # the format's own: a str, or a tuple of them
    n_parts, n_pieces = len(parts), len(pieces)
    date_at = at[time_group] if date else -1

    def read(line: str) -> Sequence[str] | None:
        parts = line.split('"')
        if len(parts) != n_parts or "\\" in line:
            return None
        unquoted = '"'.join(parts[::2])
        pieces = unquoted.split()
        if (
            len(pieces) != n_pieces
            or " ".join(pieces) != unquoted
            or literal_at(pieces) != expected
        ):
            return None
        if date_at >= 0:
            pieces[date_at] += " " + pieces[date_at + 1]
        pieces += parts
        pieces.append("")
        return fields(pieces)  # type: ignore[no-any-return]

    return _SplitPlan(read, bool(date))


def _bracketed_time(parse: Callable[[str], float]) -> Callable[[str], float]:
    """``parse`` for a time read with the brackets around it, as the regex
    ``\\[([^\\]]*)\\]`` reads it: the group is what lies between, and holds no "]"."""

    def parse_bracketed(text: str) -> float:
        if text[:1] != "[" or text[-1:] != "]" or "]" in text[1:-1]:
            raise ValueError("the time is not in brackets")
        return parse(text[1:-1])

    return parse_bracketed


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
        variables: list[_Variable] = []
        position = 0
        for group, match in enumerate(_VARIABLE.finditer(spec), 1):
            literal = spec[position : match.start()]
            pattern.append(re.escape(literal))
            name = match.group(1) or match.group(2) or match.group(3)
            if name.startswith("%{"):
                name = name.lower()  # header names are case-insensitive
            before = spec[match.start() - 1] if match.start() else ""
            field = _FIELDS.get(name)
            if before == '"':
                kind = "quoted"
                pattern.append(_QUOTED)
            elif before == "[":
                kind = "bracketed"
                pattern.append(_BRACKETED)
            elif field == "time_local":
                # Apache's %t brings its own brackets.
                kind = "brackets"
                pattern.append(r"\[([^\]]*)\]")
            else:
                kind = "bare"
                pattern.append(_BARE)
            variables.append(_Variable(literal, group, kind, field))
            if field is not None:
                self._groups.setdefault(field, group)
            position = match.end()
        tail = spec[position:]
        pattern.append(re.escape(tail))
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
        self.scan = self._scan(empty, variables, tail)

    def __call__(self, line: str) -> LogLine:
        return self.parse(line)

    def _scan(self, empty: int, variables: list[_Variable], tail: str) -> Scan | None:
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
        groups[_TIME] = at
        groups[SCAN_FIELDS.index("seconds")] = empty if seconds is None else seconds
        match = self._match
        at_groups = tuple(groups)
        plan = _split_plan(variables, tail, at_groups, at)
        if plan is None:

            def read(line: str) -> Sequence[str] | None:
                found = match(line)
                return None if found is None else found.group(*at_groups)

            return Scan(read, time, scale)
        split = plan.read
        if not plan.bracketed_time:

            def read_split(line: str) -> Sequence[str] | None:
                values = split(line)
                if values is None:
                    found = match(line)
                    return None if found is None else found.group(*at_groups)
                return values

            return Scan(read_split, time, scale)

        def read_bracketed(line: str) -> Sequence[str] | None:
            values = split(line)
            if values is None:
                # The regex's time without its brackets; the split reading keeps them.
                found = match(line)
                if found is None:
                    return None
                values = list(found.group(*at_groups))
                values[_TIME] = f"[{values[_TIME]}]"
            return values

        return Scan(read_bracketed, _bracketed_time(time), scale)

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
