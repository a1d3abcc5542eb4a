"""Which parser reads a ``--format`` name."""

from __future__ import annotations

from collections.abc import Callable

from headcount.logimport._json_formats import parse_caddy, parse_nginx_json
from headcount.logimport._line import LogLine
from headcount.logimport._text_formats import NAMED_TEXT_FORMATS, TextFormat

__all__ = ["FORMAT_NAMES", "Parser", "parser_for"]

Parser = Callable[[str], LogLine]
FORMAT_NAMES = (*NAMED_TEXT_FORMATS, "nginx-json", "caddy", "log:<format string>")


def parser_for(name: str) -> Parser:
    """The line parser for a format name, or a custom ``log:<format string>`` (nginx
    ``$variables`` or Apache ``%directives``). Raises ValueError for an unknown name or
    a format string without time, status or request."""
    if name == "nginx-json":
        return parse_nginx_json
    if name == "caddy":
        return parse_caddy
    if name.startswith("log:"):
        return TextFormat(name[4:])
    spec = NAMED_TEXT_FORMATS.get(name)
    if spec is None:
        raise ValueError(f"unknown format {name!r}; one of: {', '.join(FORMAT_NAMES)}")
    return TextFormat(spec)
