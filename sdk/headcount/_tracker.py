"""The Tracker: coarsens and counts requests in-process; a background sender ships counts."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import threading
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from time import time as wall_time
from typing import Final

import httpx

from headcount._bots import CATEGORY_BY_AGENT, UNSEEN, bot_category
from headcount._caches import CleanOnlyCache
from headcount._coarsen import (
    HTML_BY_CONTENT_TYPE,
    LATENCY_EDGES_S,
    METHOD_BY_NAME,
    STATUS_CLASS_BY_CODE,
    UTM_NONE,
    is_html,
    is_prefetch,
    latency_of,
    method_of,
    parse_utm,
    slug,
)
from headcount._forks import new_live_mark
from headcount._log import RateLimitedLog, logger
from headcount._referrer import coarsen_referrer
from headcount._request import RequestInfo
from headcount._routes import normalize_route, normalized_route
from headcount._schedule import HourlyHold
from headcount._sender import Sender, Take
from headcount._settings import SendSchedule, TrackerSettings
from headcount._spool import ExitSpool
from headcount._stats import Counters, TrackerStats
from headcount._table import CountTable, Key, PageviewKey, to_records
from headcount._visits import Linked, MemoryVisits, VisitStore, build_visit_store
from headcount.wire import (
    INTERNAL,
    LATENCY_LABELS,
    MAX_PROPS,
    NAME_PATTERN,
    UNMATCHED,
    Record,
)

__all__ = ["Tracker"]

_NAME = re.compile(NAME_PATTERN)
_PENDING: Final = Linked.PENDING  # a global name: cheaper on the hot path than the attribute
_CHILD_WAIT = 1.0
_SETTLE_TIMEOUT = 5.0
# Sec-Fetch-Dest values of a top-level navigation, as browsers send them (or none):
# anything else goes through is_prefetch.
_NAVIGATION: Final = frozenset({"document", None})
# Tracker's parameters that are not options of TrackerSettings.
_NOT_OPTIONS: Final = frozenset({"self", "clock"})
_ROUTE_INFOS: Final = 8192

Clock = Callable[[], float]


class _ProcessState:
    """Everything that must not cross a fork: the table, its lock, buffer, thread, client."""

    __slots__ = (
        "clock", "counters", "hold", "log", "pid", "sender", "spool", "start_lock", "table",
        "visits",
    )  # fmt: skip

    def __init__(self, settings: TrackerSettings, pid: int, clock: Clock) -> None:
        self.pid = pid
        self.clock = clock
        self.counters = Counters()
        self.log = RateLimitedLog()
        self.table = CountTable(settings.max_keys)
        self.hold = (
            # The sender collects every flush interval (give or take a tenth), so a
            # request of the hour's last moments is held a little past the hour's end.
            HourlyHold(settings.max_keys, settle=1.1 * settings.flush_interval + 10)
            if settings.send_schedule == "hourly"
            else None
        )
        self.start_lock = threading.Lock()
        self.visits: VisitStore | None = build_visit_store(
            settings,
            self.table.add_finished_visits,
            self.table.add_linked_pageview,
            self.counters,
            self.log,
            clock,
        )
        self.spool = (
            ExitSpool(settings.exit_spool, settings.endpoint, settings.write_token)
            if settings.exit_spool and self.hold is not None
            else None
        )
        self.sender = Sender(settings, self.counters, self.log, self.collect)

    def collect(self, take: Take) -> list[Record]:
        """The records to send now: those due (``"due"``), every one (``"everything"``,
        an explicit flush), or at exit those due, the rest left in the spool if there
        is one (``"exit"``)."""
        if self.visits is not None:
            # Before the swap, so visits that went idle leave in this very batch; and
            # here, on the sender's schedule, so they end without waiting for a request.
            try:
                self.visits.sweep()
            except Exception as exc:
                self.counters.add(errors=1)
                self.log.warning("visits", "headcount visit sweep failed: %s", type(exc).__name__)
        counts = self.table.swap()
        if self.hold is None:
            return to_records(counts.items())
        now = self.clock()
        self.hold.add(counts, now)
        if self.spool is not None:
            self._adopt_spooled(self.spool, self.hold)
            if take == "exit":
                due = self.hold.take_due(now=now)
                held = self.hold.take_held()
                try:
                    self.spool.leave(held)
                except OSError as exc:
                    # Sent at once rather than lost: the exit is timed, as without a spool.
                    self.counters.add(errors=1)
                    self.log.warning(
                        "spool", "headcount: could not leave held counts in exit_spool "
                        "(%s); sending them now", type(exc).__name__,
                    )  # fmt: skip
                    for _, _, window in held:
                        for key, n in window.items():
                            due[key] = due.get(key, 0) + n
                return to_records(due.items())
        return to_records(self.hold.take_due(everything=take != "due", now=now).items())

    def _adopt_spooled(self, spool: ExitSpool, hold: HourlyHold) -> None:
        """Hold what exited processes of this app left in the spool."""
        try:
            for hour, release_at, counts in spool.take():
                hold.adopt(hour, release_at, counts)
        except OSError as exc:
            self.counters.add(errors=1)
            self.log.warning("spool", "headcount: exit_spool unreadable: %s", type(exc).__name__)

    def counts(self) -> dict[Key, int]:
        counts = self.table.snapshot()
        if self.hold is not None:
            for key, n in self.hold.snapshot().items():
                counts[key] = counts.get(key, 0) + n
        return counts


class Tracker:
    """Counts an app's traffic coarsely, in-process, and sends the counts to a collector.

    Every keyword argument but ``clock`` is a field of ``TrackerSettings`` (its comments
    say what each means) and comes from the argument, else the ``HEADCOUNT_<OPTION>``
    environment variable, else its default. Bad arguments raise ``ConfigurationError``
    naming the option; a bad environment value warns with ``ConfigurationWarning`` and
    the default is used. ``transport`` (an ``httpx.BaseTransport``, such as
    ``httpx.MockTransport``) is the one way to swap HTTP. ``clock`` (a callable
    returning epoch seconds, default ``time.time``) sets the hour requests count in, for
    tests.

    Recording (``record_request``, ``event``) never blocks on I/O and never raises: it
    coarsens, then increments an in-memory count under a lock. Internal errors are
    swallowed and counted in ``stats().errors``. A daemon thread started by the first
    record (never at import or construction, so a pre-fork master holds none) sends
    the counts every ``flush_interval`` seconds. A forked child starts over with an empty
    table, a new thread and a new HTTP client; nothing its parent counted is sent twice.

    Bots (by user agent) count in the ``bot`` counter, by coarse category (search, ai,
    social, monitor, other), and in ``request``: they are load on the app, but never
    pageviews.

    ``flush`` and ``shutdown`` block for at most their timeout; asyncio apps call them
    through ``await asyncio.to_thread(tracker.shutdown)``. The interpreter's exit runs one
    last ``shutdown(shutdown_timeout)`` on its own.

    ``send_schedule="hourly"`` holds each hour's counts until a random moment of the
    following hour, so the collector learns nothing finer than the hour from arrival
    times; counts then show up 1-2 hours late, and counts still held by a process that
    is killed (rather than shut down) are lost. ``flush`` and ``shutdown`` send held
    counts at once; with ``exit_spool`` (a directory) ``shutdown`` sends only what is due
    and leaves the rest there for the app's next process to send at its moment.

    Visits (on unless ``visits=False``): a pageview continues its browser's visit while
    no gap of ``visit_gap`` seconds (30 minutes) separates them. The browser is told
    apart by a keyed hash of client address, user agent and host, under a secret kept in
    memory and replaced daily; only a finished visit's start hour, entry route, duration
    range and pages range are counted and sent. ``visits_store`` is ``"memory"`` (per
    process) or a Redis URL shared by all workers (one round trip per pageview, made on
    a worker thread, never the request's).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        write_token: str | None = None,
        *,
        enabled: bool | None = None,
        # sending
        flush_interval: float | None = None,
        send_schedule: SendSchedule | None = None,
        shutdown_timeout: float | None = None,
        exit_spool: str | None = None,
        request_timeout: float | None = None,
        backoff_initial: float | None = None,
        backoff_max: float | None = None,
        transport: httpx.BaseTransport | None = None,
        # the buffer of unsent batches
        max_buffer_batches: int | None = None,
        max_buffer_bytes: int | None = None,
        max_buffer_age: float | None = None,
        # counting
        max_keys: int | None = None,
        exclude_routes: Sequence[str] | None = None,
        exclude_default_routes: bool | None = None,
        # visits
        visits: bool | None = None,
        visits_store: str | None = None,
        visit_gap: float | None = None,
        max_visits: int | None = None,
        trusted_proxies: Sequence[str] | None = None,
        visits_redis_timeout: float | None = None,
        visits_redis_prefix: str | None = None,
        visits_secret: str | None = None,
        # tests
        clock: Clock | None = None,
    ) -> None:
        # Every option is a field of TrackerSettings of the same name; an argument left
        # at None falls back to its HEADCOUNT_* variable, then to its default.
        options = {name: value for name, value in locals().items() if name not in _NOT_OPTIONS}
        self._set_up(TrackerSettings.build(options), clock or wall_time)

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> Tracker:
        """A Tracker from a mapping of option names in any case (framework configuration:
        Flask's ``HEADCOUNT_*`` config keys, Django's ``HEADCOUNT`` dict)."""
        tracker = cls.__new__(cls)
        tracker._set_up(TrackerSettings.build(options), wall_time)
        return tracker

    def _set_up(self, settings: TrackerSettings, clock: Clock) -> None:
        self.settings = settings
        self._recording = self.settings.enabled
        # Set once this process's sender runs; reads as unset in a forked child.
        self._live = new_live_mark()
        self._clock = clock
        self._state = _ProcessState(self.settings, os.getpid(), clock)
        self._child_claims: dict[int, object] = {}
        self._atexit_registered = False
        self._split_visits_warned = False
        self._hour_window = (0, 0)
        # Route and exclusion per template, for templates sent as they are and for the
        # app's own routes (a router's rule, a CMS page's path: route_from_app). A raw
        # path an app passes (set_route with request.path) that needed an {id} is worked
        # out again each time rather than kept (see _caches). Bounded (_ROUTE_INFOS), and
        # larger than normalize_route's own: a CMS that gives each page its own route
        # (Wagtail) has thousands, and a miss costs 10-15 µs of template checks.
        self._route_infos = CleanOnlyCache[str | None, tuple[str, bool, bool]](
            self._route_info, lambda _, info: info[2], _ROUTE_INFOS
        )
        excluded = self.settings.excluded_routes
        self._excluded_exact = frozenset(r for r in excluded if not r.endswith("*"))
        self._excluded_prefixes = tuple(r[:-1] for r in excluded if r.endswith("*"))
        if self._recording:
            os.register_at_fork(
                after_in_child=functools.partial(_reset_in_child, weakref.ref(self))
            )
            if self.settings.visits_mode == "redis":
                self._sweep_at_start()

    def __repr__(self) -> str:
        return f"<Tracker endpoint={self.settings.safe_endpoint!r} enabled={self.settings.enabled}>"

    # --- recording (the hot path) -----------------------------------------------------

    def record_request(self, info: RequestInfo) -> None:
        """Coarsen one finished request and count it. Never raises, never does I/O."""
        if not self._recording:
            return
        try:
            if not self._live[0]:
                self._activate()
            known = self._route_infos.get(info.route)
            if known is None:
                infos = self._route_infos
                known = infos.remember(info.route) if info.route_from_app else infos(info.route)
            route, excluded, _ = known
            hour, hour_end = self._hour_window
            now = self._clock()
            if not hour <= now < hour_end:
                hour = self._enter_hour(now)
            # Inlined table lookups; the functions handle the unusual values.
            method = METHOD_BY_NAME.get(info.method) or method_of(info.method)
            status = STATUS_CLASS_BY_CODE.get(info.status, "5xx")
            # A route the app set itself (generalize_path, a path given to set_route) is
            # not kept for a page that does not exist: its path is whatever a visitor
            # typed, and a name or a token in words has no shape to tell. (Other
            # answers keep it: a template for a redirect or a refusal is the app's.)
            if (info.status == 404 or info.status == 410) and not info.route_from_app:
                route = UNMATCHED
            elapsed = info.elapsed
            latency = (
                LATENCY_LABELS[bisect_right(LATENCY_EDGES_S, elapsed)]
                if elapsed >= 0
                else latency_of(elapsed)
            )
            request: Key = ("request", hour, route, method, status, latency)
            # Inlined cache lookups, as above; the functions fill the caches on a miss.
            user_agent = info.user_agent
            category = CATEGORY_BY_AGENT.get(user_agent, UNSEEN)
            if category == UNSEEN:
                category = bot_category(user_agent)
            if category is not None:
                self._state.table.add(request, ("bot", hour, category))
            elif (
                method == "GET"
                and status == "2xx"
                and not (excluded or info.excluded)
                and (
                    is_html(info.content_type)
                    if (html := HTML_BY_CONTENT_TYPE.get(info.content_type)) is None
                    else html
                )
                and not (
                    (info.purpose is not None or info.sec_fetch_dest not in _NAVIGATION)
                    and is_prefetch(info.purpose, info.sec_fetch_dest)
                )
            ):
                site = info.sec_fetch_site
                referrer = (
                    INTERNAL
                    if site == "same-origin"
                    else coarsen_referrer(info.referer, info.host, site)
                )
                query = info.query_string
                source, medium, campaign = (
                    parse_utm(query) if query and "utm_" in query else UTM_NONE
                )
                entry = referrer != INTERNAL
                pageview: PageviewKey = (
                    "pageview", hour, route, referrer, source, medium, campaign, entry
                )  # fmt: skip
                state = self._state
                if state.visits is not None:
                    # With visits on, an entry is the pageview that starts a visit; the
                    # referrer rule stays only where the store cannot tell.
                    # The visit is ordered by when each page was asked for: a browser
                    # asks for its next page only after this response reached it, while
                    # this worker may record the request later than the next worker.
                    # Never before the hour it is counted in (nor -inf for an infinite
                    # elapsed): a visit starts in its first pageview's hour.
                    asked = now - elapsed if elapsed > 0 else now
                    started = state.visits.record(
                        info.client_addr, info.forwarded_for, user_agent, info.host,
                        route, pageview, asked if asked > hour else hour,
                    )  # fmt: skip
                    if started is _PENDING:
                        state.table.add(request)  # the store counts the pageview
                        return
                    if started is not None and started is not entry:
                        # Built whole rather than copied with the entry replaced: a
                        # returning visitor who arrives from another site comes here on
                        # every pageview.
                        pageview = (
                            "pageview", hour, route, referrer, source, medium, campaign, started
                        )  # fmt: skip
                state.table.add(request, pageview)
            else:
                self._state.table.add(request)
        except Exception as exc:
            self._swallow(exc)

    def event(self, name: str, route: str | None = None, **props: str | int | bool) -> None:
        """Count a custom event: a declared ``name`` (``[a-z][a-z0-9_.-]*``), the route it
        happened on (a template, as for requests) and up to 16 short slug properties.

        An invalid name or property value drops the event: it is counted in
        ``stats().errors`` and logged (rate-limited) without the offending value.
        """
        if not self._recording:
            return
        try:
            if not self._live[0]:
                self._activate()
            values = _event_values(name, props)
            if isinstance(values, str):
                self._state.counters.add(errors=1)
                self._state.log.warning("event", "headcount dropped an event: %s", values)
                return
            hour = int(self._clock()) // 3600 * 3600
            route_template = normalize_route(route) if route is not None else UNMATCHED
            self._state.table.add(("event", hour, name, route_template, values))
        except Exception as exc:
            self._swallow(exc)

    def _enter_hour(self, now: float) -> int:
        hour = int(now) // 3600 * 3600
        # One tuple, so a concurrent reader never pairs an hour with another hour's end.
        self._hour_window = (hour, hour + 3600)
        return hour

    def _route_info(self, template: str | None) -> tuple[str, bool, bool]:
        """The wire route of ``template``, whether it is excluded, and whether it was
        template text as it came (only then is it remembered). Normalized once: a miss
        that needed rewriting (a path with a number in it) costs tens of microseconds,
        and such a path misses every time."""
        route, clean = normalized_route(template)
        excluded = route in self._excluded_exact or route.startswith(self._excluded_prefixes)
        return route, excluded, clean

    def served_by_several_processes(self) -> None:
        """Tell the tracker that other processes serve this app too. The integrations call
        it when the server says so (WSGI's ``wsgi.multiprocess``); with visits linked in
        memory it then warns, once, that one visitor's visit is split between processes."""
        if self._split_visits_warned or self.settings.visits_mode != "memory":
            return
        self._split_visits_warned = True
        logger.warning(
            "headcount: this app is served by several processes, but visits are linked "
            "per process (visits_store='memory'), so one visitor's visit is counted as "
            "several shorter ones; set visits_store to a Redis URL, or visits=False"
        )

    def _swallow(self, exc: Exception) -> None:
        try:
            state = self._state
            state.counters.add(errors=1)
            state.log.warning("internal", "headcount swallowed an error: %s", type(exc).__name__)
        except Exception:  # noqa: S110 - the app must never see an SDK error
            pass

    # --- replaying requests (the access-log importer) ---------------------------------

    def _replay_at(self, clock: Callable[[], float]) -> None:
        """Count requests at the times ``clock`` gives (a log line's time) rather than now,
        link visits on that clock too, and never start the sender: the caller takes the
        counts with ``_take_replayed`` and sends them itself."""
        self._clock = clock
        self._live[0] = 1
        state = self._state
        if state.visits is not None:
            state.visits = MemoryVisits(self.settings, state.table.add_finished_visits, clock=clock)

    def _take_replayed(self, finish: bool) -> dict[Key, int]:
        """The counts so far, after closing the visits that went idle (all of them when
        ``finish``)."""
        state = self._state
        if state.visits is not None:
            if finish:
                state.visits.close()
            else:
                state.visits.sweep()
        return state.table.swap()

    # --- process lifecycle --------------------------------------------------------------

    def _sweep_at_start(self) -> None:
        """Count at once the shared visits that ended while no worker was running (a
        deploy, a quiet night), rather than with the first request, which may be hours
        away; the sender then starts to deliver them."""
        state = self._state
        if state.visits is None:
            return
        try:
            state.visits.sweep()
        except Exception as exc:
            self._swallow(exc)
        if state.table.snapshot():
            self._activate()

    def _activate(self) -> None:
        """First record in this process: start the sender (after a fork: a fresh state)."""
        state = self._current_state()
        with state.start_lock:
            if not state.sender.started:
                state.sender.start()
            if not self._atexit_registered:
                # Registered once: a forked child inherits the registration itself.
                atexit.register(self._at_exit)
                self._atexit_registered = True
        self._live[0] = 1

    def _current_state(self) -> _ProcessState:
        pid = os.getpid()
        state = self._state
        if state.pid == pid:
            return state
        return self._state_for_child(pid)

    def _state_for_child(self, pid: int) -> _ProcessState:
        """Replace the parent's state, without touching any lock the parent may have held.

        Both the fork hook and the pid check on the hot path (uWSGI skips fork hooks) get
        here; an atomic ``dict.setdefault`` picks one thread to build the new state.
        """
        claim = object()
        if self._child_claims.setdefault(pid, claim) is claim:
            self._child_claims = {pid: claim}
            self._state = _ProcessState(self.settings, pid, self._clock)
            return self._state
        give_up = time.monotonic() + _CHILD_WAIT
        while self._state.pid != pid:
            if time.monotonic() > give_up:
                raise RuntimeError("timed out waiting for the post-fork state")
            time.sleep(0.0001)
        return self._state

    def _at_exit(self) -> None:
        self.shutdown(self.settings.shutdown_timeout)

    def _end_visits_in_memory(self) -> None:
        """End now every visit this process links in memory, so the next flush counts
        them: for a server about to stop the process without exit hooks (uvicorn), which
        would lose them. Visits in Redis stay open for the other workers. Never raises."""
        try:
            state = self._state
            if state.pid == os.getpid() and isinstance(state.visits, MemoryVisits):
                state.visits.close()
        except Exception as exc:
            self._swallow(exc)

    # --- sending and inspection -----------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything counted so far, waiting at most ``timeout`` seconds (default:
        ``request_timeout``), retrying within that time as backoff and ``Retry-After``
        allow. True when everything counted so far reached the collector; False when
        something is still buffered (collector down, out of time, token refused), the
        collector refused a batch or a record, or a batch was dropped unsent (older than
        ``max_buffer_age``, buffer full; all counted in ``stats().dropped``). Never
        raises. Blocks the calling thread: asyncio apps use ``asyncio.to_thread``."""
        if not self.settings.enabled:
            return True
        try:
            return self._current_state().sender.flush(
                self.settings.request_timeout if timeout is None else timeout
            )
        except Exception as exc:
            self._swallow(exc)
            return False

    def _flush_at_exit(self, timeout: float) -> bool:
        """``flush`` for a server about to stop the process without exit hooks (the end
        of an ASGI lifespan): what is not due yet goes to the exit spool if there is one,
        as at exit."""
        if not self.settings.enabled:
            return True
        try:
            return self._current_state().sender.flush(timeout, "exit")
        except Exception as exc:
            self._swallow(exc)
            return False

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop recording, send what is left within ``timeout`` seconds (default:
        ``shutdown_timeout``) and stop the sender thread. For gunicorn ``worker_exit``,
        ASGI lifespan shutdown or Celery ``worker_process_shutdown``. Idempotent.
        Returns what ``flush`` returns; counts still unsent are lost with the process,
        and one warning says how many and why."""
        if not self._recording:
            return True
        self._recording = False
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        try:
            state = self._current_state()
            if state.visits is not None:
                # Open visits end with the process (in memory) or are left to the other
                # workers (Redis); either way they are counted before the last send. A
                # Redis that hangs must not stretch exit past the deadline: closing gets
                # half of it, on a daemon thread that is abandoned if it overruns.
                closer = threading.Thread(
                    target=state.visits.close, name="headcount-visits-close", daemon=True
                )
                closer.start()
                closer.join(budget / 2)
                # Closed (or abandoned): the final collect must not sweep it again.
                state.visits = None
            return state.sender.shutdown(max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            self._swallow(exc)
            return False

    def peek(self) -> list[Record]:
        """A copy of the coarsened records counted and not yet swapped out for sending."""
        if not self.settings.enabled:
            return []
        state = self._current_state()
        if state.visits is not None:
            # Pageviews whose visit link is still being made (Redis) are counted first.
            state.visits.settle(_SETTLE_TIMEOUT)
        return to_records(state.counts().items())

    def stats(self) -> TrackerStats:
        """What this process's tracker has done so far."""
        state = self._current_state()
        counters = state.counters
        return TrackerStats(
            recorded=state.table.recorded,
            overflowed=state.table.overflowed,
            discarded=state.table.discarded,
            sent=counters.sent,
            retried=counters.retried,
            dropped=counters.dropped,
            buffered=state.sender.buffered,
            errors=counters.errors,
            late=counters.late,
        )


def _event_values(name: object, props: Mapping[str, object]) -> tuple[tuple[str, str], ...] | str:
    """The event's properties as sorted (name, slug) pairs, or why the event is invalid."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return "the name must match [a-z][a-z0-9_.-]{0,63}"
    if len(props) > MAX_PROPS:
        return f"more than {MAX_PROPS} properties"
    values: list[tuple[str, str]] = []
    for key, value in props.items():
        if not _NAME.fullmatch(key):
            return "a property name must match [a-z][a-z0-9_.-]{0,63}"
        cleaned = slug(str(value)) if isinstance(value, str | int | bool) else None
        if cleaned is None:
            return f"property {key!r} is not a short slug (or looks like an identifier)"
        values.append((key, cleaned))
    return tuple(sorted(values))


def _reset_in_child(tracker_ref: weakref.ref[Tracker]) -> None:
    tracker = tracker_ref()
    if tracker is not None:
        # A fork hook must never break the child; the hot path's check retries.
        with contextlib.suppress(Exception):
            # Unset in the child whatever the kernel did with the page: the first record
            # then starts this process's sender.
            tracker._live[0] = 0
            tracker._current_state()
