"""The importer: log lines -> RequestInfo -> a replaying Tracker -> hourly batches.

Every line goes through ``Tracker.record_request``, so pageview, bot, referrer, utm,
latency, status, exclusion and visit rules are the live SDK's own. The tracker counts at
the line's time instead of now and never starts its sender: counts are taken per hour
and sent here, with batch ids derived from the log content and the hour, so running the
same import again is recognised by the collector as a retry.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

import httpx
import msgspec

from headcount._errors import HeadcountError
from headcount._request import RequestInfo, fill
from headcount._table import Key, merge_counts, to_records
from headcount._tracker import Tracker
from headcount._version import __version__
from headcount.integrations._common import matched_route
from headcount.logimport._formats import Parser
from headcount.logimport._line import LogLine, parse_seconds
from headcount.logimport._reader import LineSource
from headcount.logimport._routes import RouteResolver
from headcount.logimport._text_formats import Scan, TextFormat
from headcount.logimport._text_formats import text_field as _text
from headcount.wire import INGEST_PATH, MAX_BODY_BYTES, MAX_RECORDS, Batch, Record, VisitsMode

__all__ = [
    "IMPORT_SEAL_PATH",
    "IMPORT_STATE_PATH",
    "BadLogLine",
    "ImportFailed",
    "ImportSummary",
    "Importer",
]

logger = logging.getLogger("headcount.logimport")

IMPORT_STATE_PATH: Final = "/v1/import/state"
# The ingest endpoint for imports: their hours may be as old as the site keeps hours,
# and their batch ids are remembered as long.
IMPORT_INGEST_PATH: Final = "/v1/import/ingest"
IMPORT_SEAL_PATH: Final = "/v1/import/seal"
# Releasing history draws noise for every cell it holds: give each week of it time.
SEAL_TIMEOUT: Final = 600.0
_SEAL_SPAN: Final = 7 * 86400
SENDER_NAME: Final = "headcount-import"
_BODY_LIMIT: Final = MAX_BODY_BYTES - 16 * 1024
# Counts are taken out of the tracker this often, so idle visits close on the log's clock.
_TAKE_EVERY: Final = 49_152
_PROGRESS_EVERY: Final = 8192
# How far out of time order a log's lines may be: an hour is finished once lines this far
# into the next one were read (nginx writes a line when the request ends).
_REORDER_SECONDS: Final = 600
# Distinct (method, target, status, host) remembered with their route; past this many the
# memory starts over, so it stays bounded on logs full of unique query strings.
_KNOWN_TARGETS: Final = 16_384
# Without a content type in the log, a successful GET of a path with no file extension
# (or .html) is taken to be an HTML page: static assets carry extensions.
_HTML_EXTENSIONS: Final = frozenset({"", "html", "htm", "xhtml", "php", "asp", "aspx", "jsp"})
_ENCODER = msgspec.json.Encoder()
# A target's matched route, whether it is excluded, its query string, and whether it
# looks like a page.
_Target = tuple[str | None, bool, str | None, bool]
# The same for a scanned line, with the method and status it read and the content type
# taken when the log has none.
_Scanned = tuple[str, str | None, int, bool, str | None, str | None]


class ImportFailed(HeadcountError):
    """The import cannot go on: a collector refusal, an unreadable input."""


class BadLogLine(ImportFailed):
    """A line that does not fit the format (see ``--skip-bad-lines``)."""

    def __init__(self, path: str, number: int, reason: str) -> None:
        # Never the line itself: it holds an address and a user agent.
        super().__init__(f"{path}:{number}: {reason}")


@dataclass
class ImportSummary:
    lines: int = 0
    pageviews: int = 0
    requests: int = 0
    bots: int = 0
    visits: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    hours: list[int] = field(default_factory=list)
    accepted: int = 0
    late: int = 0
    duplicate_batches: int = 0
    sealed_until: int | None = None


@dataclass
class SiteState:
    """What the collector says about a site before an import."""

    first_hour: int | None = None
    sealed_until: int | None = None
    oldest_hour: int | None = None
    newest_hour: int | None = None
    last_hour: int | None = None
    append: bool = False
    # Sorted [start, end) hour ranges the import may not fill (for a noised site, all
    # that the clock has sealed); None from an older collector: then sealed_until rules.
    closed: list[tuple[int, int]] | None = None
    # Where sealing of a noised site began: only an import's seal releases hours before.
    origin: int | None = None
    # The first hour whose live counts may still arrive (None from an older collector).
    arriving_from: int | None = None

    def refusal(self, hour: int) -> str | None:
        if self.append:
            if self.last_hour is not None and hour <= self.last_hour:
                return "hours with data"
        elif self.first_hour is not None and hour >= self.first_hour:
            return "hours already stored"
        if self.closed is not None:
            at = bisect.bisect_right(self.closed, (hour, math.inf)) - 1
            if at >= 0 and self.closed[at][0] <= hour < self.closed[at][1]:
                return "already sealed"
        elif self.sealed_until is not None and hour < self.sealed_until:
            return "already sealed"
        if self.oldest_hour is not None and hour < self.oldest_hour:
            return "older than retention"
        if self.newest_hour is not None and hour > self.newest_hour:
            return "in the future"
        if not self.append and self.arriving_from is not None and hour >= self.arriving_from:
            return "live counts may still arrive"
        return None


def _is_page_like(path: str) -> bool:
    last = path.rsplit("/", 1)[-1]
    dot = last.rfind(".")
    return (last[dot + 1 :].lower() if dot >= 0 else "") in _HTML_EXTENSIONS


class Importer:
    """One import run. ``client`` is None for a dry run without a collector."""

    def __init__(
        self,
        parser: Parser,
        resolver: RouteResolver,
        *,
        client: httpx.Client | None,
        tracker_options: dict[str, Any],
        dry_run: bool = False,
        skip_bad_lines: bool = False,
        host: str | None = None,
        append: bool = False,
        follow: bool = False,
        send_every: float = 60.0,
        wall_clock: Callable[[], float] = time.time,
        output: Callable[[str], None] = print,
        routes_from_app: bool = False,
    ) -> None:
        """``routes_from_app``: ``resolver`` answers with the app's own route text (a
        router's rules), which the tracker remembers whatever it holds, as the live
        integrations' routes; never set it for a resolver that can answer with a path."""
        self._parse = parser
        self._resolve = resolver
        self._routes_from_app = routes_from_app
        self._client = client
        self._ingest_path = IMPORT_INGEST_PATH
        self._dry_run = dry_run
        self._skip_bad_lines = skip_bad_lines
        self._host = host
        self._append = append
        self._output = output
        self._now = 0.0
        options = {"send_schedule": "immediate", **tracker_options}
        endpoint = str(client.base_url) if client is not None else "http://dry-run.invalid"
        self._tracker = Tracker(endpoint, "dry-run", **options)
        self._tracker._replay_at(lambda: self._now)
        self._max_keys = self._tracker.settings.max_keys
        self._hours: dict[int, dict[Key, int]] = {}
        self._known: dict[tuple[str, str, int, str | None], _Target] = {}
        self._scanned: dict[tuple[str, str, str | None], _Scanned] = {}
        self._follow = follow
        self._send_every = send_every
        self._wall = wall_clock
        self._sent_at = wall_clock()
        self._parts: dict[int, int] = {}  # hour -> parts emitted
        self._spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _send
        self._spooled: dict[int, list[tuple[int, int]]] = {}
        self._fingerprint: Callable[[], str] = lambda: ""

    def site_state(self) -> SiteState:
        if self._client is None:
            return SiteState(append=self._append)
        response = self._client.get(IMPORT_STATE_PATH)
        _check(response)
        data = response.json()
        if self._follow:
            # Following a growing log makes the log the site's live source: every line
            # read is newer than the state read at the start, and would be refused.
            data.pop("arriving_from", None)
        closed = data.get("closed")
        return SiteState(
            data.get("first_hour"),
            data.get("sealed_until"),
            data.get("oldest_hour"),
            data.get("newest_hour"),
            data.get("last_hour"),
            self._append,
            None if closed is None else [(int(lo), int(hi)) for lo, hi in closed],
            data.get("origin"),
            data.get("arriving_from"),
        )

    def run(
        self, source: LineSource, progress: Callable[[ImportSummary], None] | None = None
    ) -> ImportSummary:
        summary = ImportSummary()
        state = self.site_state()
        self._fingerprint = lambda: source.fingerprint
        parse = self._parse
        # Routers leave garbage cycles as they match (werkzeug's matcher makes a
        # closure per call), so full collections come often, and each walked every
        # object of the app, its router and the modules loaded: over a tenth of an
        # import's time went to collecting. Those objects are set aside for the import
        # (unless the caller froze its own already, which we must not undo).
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        # Each hour's refusal, asked once: also which hours a rerun found stored.
        refusals: dict[int, str | None] = {}
        try:
            if isinstance(parse, TextFormat) and parse.scan is not None:
                scan = parse.scan
                lines = self._read_scanned(source, scan, summary, state, refusals, progress)
            else:
                lines = self._read_parsed(source, summary, state, refusals, progress)
        finally:
            if freeze:
                gc.unfreeze()
        summary.lines = lines
        self._take(finish=True)
        self._emit(summary, lambda hour: True)
        self._send(summary, _stored_unsealed(state, refusals))
        return summary

    def _read_parsed(
        self,
        source: LineSource,
        summary: ImportSummary,
        state: SiteState,
        refusals: dict[int, str | None],
        progress: Callable[[ImportSummary], None] | None,
    ) -> int:
        """Every line through the format's parser, as a LogLine: the JSON formats, and
        text formats without a request line."""
        lines = 0
        newest = 0.0
        for path, first, block in source.blocks():
            if not block:
                # Following a log that is quiet: its hours end on the wall clock.
                self._send_finished(summary, max(newest, self._wall()))
                continue
            for number, text in enumerate(block, first):
                lines += 1
                newest = self._count_parsed(
                    text, path, number, lines, summary, state, refusals, newest
                )
                if not lines % _PROGRESS_EVERY:
                    self._tick(summary, lines, progress, newest)
            if self._follow:
                self._send_finished(summary, newest)
        return lines

    def _read_scanned(
        self,
        source: LineSource,
        scan: Scan,
        summary: ImportSummary,
        state: SiteState,
        refusals: dict[int, str | None],
        progress: Callable[[ImportSummary], None] | None,
    ) -> int:
        """Text formats with a request line: the same reading as ``_read_parsed``, but
        what a line's request, status, time and request time say is worked out once per
        distinct value (consecutive lines share their time to the second), and one
        RequestInfo is filled in again for every line rather than two objects made.
        A line this cannot read goes to the parser, which says why it is bad."""
        record = self._tracker.record_request
        skipped = summary.skipped
        match, groups, parse_time, scale = scan
        targets = self._scanned
        learn = self._learn_target
        seconds_of: dict[str, float] = {}
        default_host = self._host
        # Filled in again for every line; a log has no Sec-Fetch or Purpose headers.
        info = fill(object.__new__(RequestInfo), "", None, 0, math.nan, *(None,) * 10)
        info.route_from_app = self._routes_from_app
        stamp_before: str | None = None
        refusal: str | None = None
        lines = 0
        newest = 0.0
        for path, first, block in source.blocks():
            if not block:
                self._send_finished(summary, max(newest, self._wall()))
                continue
            for number, text in enumerate(block, first):
                lines += 1
                try:
                    found = match(text)
                    if found is None:
                        raise ValueError
                    (
                        request, status_text, stamp, seconds,
                        client, forwarded, referer, agent, content_type, host,
                    ) = found.group(*groups)  # fmt: skip
                    host = _text(host) if host else None
                    target = targets.get((request, status_text, host))
                    if target is None:
                        target = learn(request, status_text, host)
                    elapsed = seconds_of.get(seconds)
                    if elapsed is None:
                        if len(seconds_of) >= _KNOWN_TARGETS:
                            seconds_of.clear()
                        measured = parse_seconds(seconds, scale)
                        # NaN: not measured; the SDK counts it in the "unknown" label.
                        elapsed = seconds_of[seconds] = math.nan if measured is None else measured
                    if stamp != stamp_before:
                        now = parse_time(stamp)
                        stamp_before = stamp
                        refusal = _refusal_of(int(now) // 3600 * 3600, state, refusals)
                        if refusal is None:
                            self._now = now
                            if now > newest:
                                newest = now
                except (ValueError, OverflowError):
                    # The parser's way after all, as in _read_parsed: it says why a line
                    # is bad, and reads what this could not (a router's ValueError).
                    stamp_before = None
                    newest = self._count_parsed(
                        text, path, number, lines, summary, state, refusals, newest
                    )
                    if not lines % _PROGRESS_EVERY:
                        self._tick(summary, lines, progress, newest)
                    continue
                if refusal is not None:
                    skipped[refusal] += 1
                    continue
                method, route, status, excluded, query, html = target
                # RequestInfo's fields set in place (`fill` without the call): the
                # referer, user agent and address as _text reads them, without its
                # call for a plain value.
                info.method = method
                info.route = route
                info.status = status
                info.elapsed = elapsed
                info.host = host or default_host
                info.referer = (
                    referer if referer and referer != "-" and "\\" not in referer
                    else _text(referer)
                )  # fmt: skip
                info.query_string = query
                info.user_agent = (
                    agent if agent and agent != "-" and "\\" not in agent else _text(agent)
                )
                info.content_type = (_text(content_type) if content_type else None) or html
                info.client_addr = (
                    client if client and client != "-" and "\\" not in client
                    else _text(client)
                )  # fmt: skip
                info.forwarded_for = _text(forwarded) if forwarded else None
                info.excluded = excluded
                record(info)
                if not lines % _PROGRESS_EVERY:
                    self._tick(summary, lines, progress, newest)
            if self._follow:
                self._send_finished(summary, newest)
        # The address and user agent of the last line go no further than this.
        fill(info, "", None, 0, math.nan, *(None,) * 10)
        return lines

    def _learn_target(self, request: str, status_text: str, host: str | None) -> _Scanned:
        """What a request line, status and host decide, checked as ``parse`` checks them."""
        parts = request.split(" ", 2)
        if len(parts) < 2 or len(status_text) != 3 or not status_text.isdigit():
            raise ValueError("the request line or status does not fit")
        method, target, status = parts[0], parts[1], int(status_text)
        route, excluded, query, page_like = self._resolve_target(method, target, status, host)
        if len(self._scanned) >= _KNOWN_TARGETS:
            self._scanned.clear()
        known = (method, route, status, excluded, query, "text/html" if page_like else None)
        self._scanned[(request, status_text, host)] = known
        return known

    def _count_parsed(
        self,
        text: str,
        path: str,
        number: int,
        lines: int,
        summary: ImportSummary,
        state: SiteState,
        refusals: dict[int, str | None],
        newest: float,
    ) -> float:
        """One line through the format's parser: counted, refused for its hour, or (with
        ``--skip-bad-lines``) skipped as bad. Returns the newest time read so far."""
        try:
            line = self._parse(text)
        except (ValueError, OverflowError) as exc:
            if not self._skip_bad_lines:
                summary.lines = lines
                raise BadLogLine(path, number, str(exc)) from None
            summary.skipped["bad line"] += 1
            return newest
        refusal = _refusal_of(int(line.time) // 3600 * 3600, state, refusals)
        if refusal is not None:
            summary.skipped[refusal] += 1
            return newest
        now = self._now = line.time
        self._tracker.record_request(self._request_info(line))
        del line  # the address and user agent go no further than this
        return max(newest, now)

    def _tick(
        self,
        summary: ImportSummary,
        lines: int,
        progress: Callable[[ImportSummary], None] | None,
        newest: float,
    ) -> None:
        """Every ``_PROGRESS_EVERY`` lines: report progress, and now and then move the
        hours the log has left behind out of memory."""
        summary.lines = lines
        if progress is not None:
            progress(summary)
        if not lines % _TAKE_EVERY:
            self._finish_hours(summary, newest)

    def _finish_hours(self, summary: ImportSummary, newest: float) -> None:
        """Move the hours the log has left behind (lines are time-ordered, give or take
        ``_REORDER_SECONDS``) out of memory: sent now when following, else spooled."""
        self._take(finish=False)
        self._emit(summary, lambda hour: hour + 3600 + _REORDER_SECONDS <= newest)

    def _send_finished(self, summary: ImportSummary, newest: float) -> None:
        wall = self._wall()
        if wall - self._sent_at >= self._send_every:
            self._sent_at = wall
            self._finish_hours(summary, newest)

    def _request_info(self, line: LogLine) -> RequestInfo:
        method = line.method
        target = line.target
        status = line.status
        # What a line's method, target, status and host decide (its route, whether it is
        # excluded, its query string, whether it looks like a page) is the same for every
        # line that repeats them: resolved once.
        key = (method, target, status, line.host)
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= _KNOWN_TARGETS:
                self._known.clear()
            known = self._known[key] = self._resolve_target(method, target, status, line.host)
        route, excluded, query, page_like = known
        content_type = line.content_type
        if content_type is None and page_like:
            content_type = "text/html"
        elapsed = line.elapsed
        return RequestInfo(
            method,
            route,
            status,
            # NaN: not measured; the SDK counts it in the "unknown" latency label.
            math.nan if elapsed is None else elapsed,
            host=line.host or self._host,
            referer=line.referer,
            query_string=query,
            user_agent=line.user_agent,
            content_type=content_type,
            client_addr=line.client_addr,
            forwarded_for=line.forwarded_for,
            excluded=excluded,
            route_from_app=self._routes_from_app,
        )

    def _resolve_target(self, method: str, target: str, status: int, host: str | None) -> _Target:
        path, _, query = target.partition("?")
        if status == 404:
            route, excluded = None, False
        else:
            route, excluded = self._resolve(method, path, host)
        return matched_route(route, status), excluded, query or None, _is_page_like(path)

    def _take(self, finish: bool) -> None:
        counts = self._tracker._take_replayed(finish)
        by_hour: dict[int, dict[Key, int]] = {}
        for key, n in counts.items():
            hour: int = key[1]
            by_hour.setdefault(hour, {})[key] = n
        for hour, part in by_hour.items():
            merge_counts(self._hours.setdefault(hour, {}), part, self._max_keys)

    def _emit(self, summary: ImportSummary, finished: Callable[[int], bool]) -> None:
        """Encode the finished hours' counts as batches and drop them from memory. A
        later part of an hour already emitted (visits that closed after it, lines out
        of order) becomes a batch of its own."""
        visits = self._tracker.settings.visits_mode
        fingerprint = self._fingerprint()
        for hour in sorted(h for h in self._hours if finished(h)):
            counts = self._hours.pop(hour)
            _tally(summary, counts)
            part = self._parts.get(hour, 0)
            self._parts[hour] = part + 1
            records = to_records(counts.items())
            bodies = list(_batches(records, f"{fingerprint}:{part}", hour, visits))
            if self._follow:
                for body in bodies:
                    self._post(summary, hour, body)
                continue
            # Hours go out newest first at the end (see _send): held on disk until then,
            # so memory does not grow with the log.
            spans = self._spooled.setdefault(hour, [])
            for body in bodies:
                spans.append((self._spool.tell(), len(body)))
                self._spool.write(body)

    def _send(self, summary: ImportSummary, stored_unsealed: Sequence[int] = ()) -> None:
        # If the import stops part-way, a rerun must find the missing hours on the side it
        # fills: before the first stored hour (history: send newest first) or after the
        # last one (--append: oldest first). Following, hours went out as they ended.
        summary.hours = sorted(self._parts)
        spooled = sorted(self._spooled)
        for hour in spooled if self._append else reversed(spooled):
            for offset, length in self._spooled[hour]:
                self._spool.seek(offset)
                self._post(summary, hour, self._spool.read(length))
        self._spool.close()
        sealed = sorted({*summary.hours, *stored_unsealed})
        if not sealed or self._client is None or self._dry_run:
            return
        # A week per request: releasing history draws noise for each of its cells, and
        # a long history in one request could outlast any timeout. Claims are per bucket,
        # so a day two requests both touch is released once.
        end = sealed[-1] + 3600
        for start in range(sealed[0], end, _SEAL_SPAN):
            response = self._client.post(
                IMPORT_SEAL_PATH,
                json={"from": start, "until": min(start + _SEAL_SPAN, end)},
                timeout=SEAL_TIMEOUT,
            )
            _check(response)
            summary.sealed_until = response.json().get("sealed_until")

    def _post(self, summary: ImportSummary, hour: int, body: bytes) -> None:
        if self._dry_run or self._client is None:
            self._output(body.decode())
            return
        response = self._client.post(
            self._ingest_path, content=body, headers={"content-type": "application/json"}
        )
        if response.status_code == 404 and self._ingest_path != INGEST_PATH:
            # A collector older than the import endpoint: its live ingest takes hours
            # back to its batch-id memory only (state's oldest_hour says so).
            self._ingest_path = INGEST_PATH
            response = self._client.post(
                INGEST_PATH, content=body, headers={"content-type": "application/json"}
            )
        _check(response)
        answer = response.json()
        if answer.get("duplicate"):
            summary.duplicate_batches += 1
        summary.accepted += int(answer.get("accepted", 0))
        summary.late += int(answer.get("late", 0))
        logger.debug("hour %d batch sent", hour)


def _tally(summary: ImportSummary, counts: dict[Key, int]) -> None:
    for key, n in counts.items():
        kind = key[0]
        if kind == "pageview":
            summary.pageviews += n
        elif kind == "request":
            summary.requests += n
        elif kind == "bot":
            summary.bots += n
        elif kind == "visit":
            summary.visits += n


def _batches(
    records: list[Record], fingerprint: str, hour: int, visits: VisitsMode
) -> Iterable[bytes]:
    """Encoded batches of one hour, split by halving until each fits; the batch id is the
    content fingerprint, the hour and the records' place, so a rerun repeats it exactly."""
    pending = [
        (start, records[start : start + MAX_RECORDS])
        for start in range(0, len(records), MAX_RECORDS)
    ]
    while pending:
        offset, part = pending.pop(0)
        batch_id = hashlib.sha256(f"{fingerprint}:{hour}:{offset}:{len(part)}".encode()).hexdigest()
        batch = Batch(
            batch_id=batch_id[:32],
            sender=SENDER_NAME,
            sender_version=__version__,
            records=part,
            visits=visits,
        )
        body = _ENCODER.encode(batch)
        if len(body) > _BODY_LIMIT and len(part) > 1:
            middle = len(part) // 2
            pending[:0] = [(offset, part[:middle]), (offset + middle, part[middle:])]
            continue
        yield body


def _refusal_of(hour: int, state: SiteState, refusals: dict[int, str | None]) -> str | None:
    """Why ``hour`` takes no line from this import (None: it does), asked once an hour."""
    if hour in refusals:
        return refusals[hour]
    refusal = refusals[hour] = state.refusal(hour)
    return refusal


def _stored_unsealed(state: SiteState, refusals: Mapping[int, str | None]) -> list[int]:
    """Hours of this log that a run which stopped before its seal already stored (the
    collector has them, so they are refused as data) but that lie before the origin,
    where nothing but an import's seal releases them: sealing them again is how a rerun
    finishes that run's work, and changes nothing for hours already released."""
    if state.origin is None or state.last_hour is None:
        return []
    limit = min(state.origin, state.last_hour + 1)
    stored = ("hours already stored", "hours with data")  # without, and with, --append
    return [hour for hour, why in refusals.items() if why in stored and hour < limit]


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text[:200]
        raise ImportFailed(f"the collector refused ({response.status_code}): {detail}")
