"""Turning one POST body into a validated, key-merged batch, or a rejection naming the field.

A batch is all or nothing: the first record that is not already coarse rejects the whole
batch, so a sender bug can never half-store a batch and a retry can never double count.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator
from typing import Final

import msgspec
from starlette.types import Receive

from headcount import wire
from headcount_collector.config import Site
from headcount_collector.errors import IngestRejected, shown_field_name, split_validation_error
from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.tables import RECORD_KEYS

__all__ = ["ClientDisconnected", "decode_batch", "oldest_accepted", "read_body", "validate_batch"]

_DECODER = msgspec.json.Decoder(wire.Batch)
DEFAULT_DEDUPE_SECONDS = 7 * 86400
# Routes already found to be templates. A site has few, and every batch repeats them, so
# remembering them beats re-checking; bounded so a stream of distinct routes cannot grow
# it without limit.
_GOOD_ROUTES: set[str] = set()
_MAX_GOOD_ROUTES = 50_000
_MAX = wire.MAX_BODY_BYTES


class ClientDisconnected(Exception):
    """The client went away before sending its whole body; there is no one to answer."""


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(
    receive: Receive, content_length: str | None, content_encoding: str | None
) -> bytes:
    """Read at most 1 MiB of body, then inflate it to at most 1 MiB if it is gzip.

    A gzip body is inflated only once it has fully arrived: a client that sends the
    start of a bomb and stalls holds no more memory than the bytes it sent (the server
    closes it at the body deadline). Inflating is cut off at the limit, whatever the
    stream claims, so we never hold more than the limit plus one chunk.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise IngestRejected(415, f"unsupported Content-Encoding {encoding[:20]!r}; use gzip")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise IngestRejected(400, "Content-Length is not a number") from None
        if declared > _MAX:
            raise IngestRejected(413, f"body larger than {_MAX} bytes")
    body = await _read_raw(receive, content_length is not None)
    return _inflate(body) if encoding == "gzip" else body


async def _read_raw(receive: Receive, length_known: bool) -> bytes:
    if length_known:
        # The common case, a body of known size in one message: skip the chunk machinery.
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        first: bytes = message.get("body", b"")
        if len(first) > _MAX:
            raise IngestRejected(413, f"body larger than {_MAX} bytes")
        if not message.get("more_body", False):
            return first
        parts = [first]
        received = len(first)
    else:
        parts = []
        received = 0
    async for chunk in _chunks(receive):
        received += len(chunk)
        if received > _MAX:
            raise IngestRejected(413, f"body larger than {_MAX} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, _MAX + 1)
    except zlib.error:
        raise IngestRejected(400, "body is not valid gzip") from None
    if len(data) > _MAX:
        raise IngestRejected(413, f"decompressed body larger than {_MAX} bytes")
    if not inflater.eof:
        raise IngestRejected(400, "gzip body is truncated")
    if inflater.unused_data.strip():
        raise IngestRejected(400, "trailing data after the gzip stream")
    return data


def decode_batch(body: bytes) -> wire.Batch:
    escape = body.find(b"\\")
    if escape >= 0:
        # No field of the schema can hold a character that JSON must escape, so an
        # escape (a newline after a slug, \u0000 in a route) is refused before decoding:
        # cheaper than checking every string, and it closes the gap in "$"-anchored
        # patterns, which match before a trailing newline.
        raise IngestRejected(
            422,
            "a string contains a JSON escape sequence; no field accepts one (send "
            "non-ASCII text as UTF-8, unescaped)",
            _json_path_at(body, escape),
        )
    try:
        return _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        message, path = split_validation_error(str(exc))
        raise IngestRejected(422, message, path) from None
    except msgspec.DecodeError as exc:
        raise IngestRejected(400, f"malformed JSON: {exc}") from None


# Where an escape is named by its field: far enough for any real batch's first records,
# bounded so that a refusal never costs more than reading the body did.
_ESCAPE_SCAN: Final = 64 * 1024
_JSON_TOKEN: Final = re.compile(rb'"[^"]*"|[{}\[\],:]')


def _json_path_at(body: bytes, offset: int) -> str:
    """The JSON path of the value that holds byte ``offset`` (a first backslash), read
    from the structure before it: no string before the first backslash can hold an
    escaped quote, so strings end at the next quote. "$" past the scan bound."""
    if offset > _ESCAPE_SCAN:
        return "$"
    path: list[str | int | None] = []  # per open container: its key (object) or index
    expecting_key = False
    for token in _JSON_TOKEN.finditer(body, 0, offset):
        text = token.group()
        if text[:1] == b'"':
            if expecting_key and path:
                path[-1] = text[1:-1].decode("utf-8", "replace")
        elif text == b"{":
            path.append(None)
            expecting_key = True
        elif text == b"[":
            path.append(0)
            expecting_key = False
        elif text in (b"}", b"]"):
            if path:
                path.pop()
            expecting_key = False
        elif text == b":":
            expecting_key = False
        elif path and isinstance(index := path[-1], int):  # a comma in an array
            path[-1] = index + 1
        else:  # a comma in an object
            expecting_key = True
    return "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" if shown_field_name(part) else "[...]"
        for part in path
        if part is not None
    )


def oldest_accepted(
    site: Site, now: int, dedupe_seconds: int = DEFAULT_DEDUPE_SECONDS, *, history: bool = False
) -> int:
    """The oldest instant a record's hour may start at.

    A live batch's id is remembered for ``dedupe_seconds`` after it arrives, so its
    records are accepted only as far back as that (less an hour of margin): a retry older
    than that could no longer be recognised as one. An import's batch id is remembered
    until its hours leave hourly retention (``PendingBatch.keep_id_until``), so an import
    reaches back as far as the site keeps hours.
    """
    if history:
        return now - site.hourly_seconds
    return now - min(site.hourly_seconds, dedupe_seconds - 3600)


def validate_batch(
    batch: wire.Batch,
    site: Site,
    now: int,
    dedupe_seconds: int = DEFAULT_DEDUPE_SECONDS,
    *,
    history: bool = False,
) -> PendingBatch:
    """Check what only the site can judge and merge equal keys; raise on the first problem.

    ``history`` is an import's batch (``POST /v1/import/ingest``): see ``oldest_accepted``.
    """
    newest = now + 3600
    oldest = oldest_accepted(site, now, dedupe_seconds, history=history)
    counts: dict[CounterKey, int] = {}
    good_routes = _GOOD_ROUTES
    if len(good_routes) > _MAX_GOOD_ROUTES:
        good_routes.clear()
    for index, record in enumerate(batch.records):
        hour = record.hour
        if hour > newest or hour < oldest:
            raise _bad_hour(index, hour > newest, site)
        kind, key_of = RECORD_KEYS[type(record)]
        if kind == "pageview":
            _check_pageview(record, index)  # type: ignore[arg-type]
        elif kind == "visit" and batch.visits == "off":
            raise IngestRejected(
                422,
                'a visit record in a batch that declares visits="off"; a sender that links'
                " nothing cannot report visits",
                f"$.records[{index}]",
            )
        if kind != "bot":
            route: str = record.route  # type: ignore[union-attr]
            if route not in good_routes:
                problem = wire.route_problem(route)
                if problem is not None:
                    raise IngestRejected(
                        422, f"route is not a template: {problem}", f"$.records[{index}].route"
                    )
                good_routes.add(route)
            if kind == "event":
                _check_event(record, site, index)  # type: ignore[arg-type]
        key = (kind, hour, key_of(record))
        counts[key] = counts.get(key, 0) + record.n
    pending = PendingBatch(
        site.id, batch.batch_id, counts, len(batch.records), batch.visits, site.timezone
    )
    if history and counts:
        pending.keep_id_until = max(hour for _, hour, _ in counts) + site.hourly_seconds
    return pending


def _bad_hour(index: int, future: bool, site: Site) -> IngestRejected:
    if future:
        problem = "hour is more than an hour in the future"
    else:
        problem = (
            "hour is too old: older than this site keeps hourly data "
            f"({site.hourly_days} days) or than batch ids are remembered"
        )
    return IngestRejected(422, problem, f"$.records[{index}].hour")


_UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign")


def _check_pageview(record: wire.Pageview, index: int) -> None:
    """The referrer and utm rules the SDK applies, enforced here whoever sent the batch."""
    problem = wire.referrer_problem(record.referrer)
    if problem is not None:
        raise IngestRejected(422, f"referrer {problem}", f"$.records[{index}].referrer")
    for field in _UTM_FIELDS:
        value = getattr(record, field)
        if value is not None:
            problem = wire.slug_problem(value)
            if problem is not None:
                raise IngestRejected(422, f"{field} {problem}", f"$.records[{index}].{field}")


def _check_event(record: wire.Event, site: Site, index: int) -> None:
    declaration = site.events.get(record.name)
    if declaration is None:
        raise IngestRejected(
            422, "event name is not declared for this site", f"$.records[{index}].name"
        )
    for name, value in record.props.items():
        allowed = declaration.props.get(name)
        if allowed is None:
            # The submitted name is neither echoed nor put in the path: an undeclared
            # name may be exactly the identifier being refused.
            raise IngestRejected(
                422,
                f"a property name is not declared for event {record.name!r} (not shown)",
                f"$.records[{index}].props",
            )
        if value not in allowed:
            raise IngestRejected(
                422,
                f"value is not declared for property {name!r} of event {record.name!r}",
                f"$.records[{index}].props.{name}",
            )
