"""Visits shared by worker processes through Redis, with the same rules as in memory.

Layout, under ``visits_redis_prefix`` plus a tag of the site's write token (so two sites
sharing a database never mix), ``{e}`` being the current key's random epoch id:

- ``key``: ``"{e}:{day}"``, the current epoch and the UTC day (on Redis's clock) it
  belongs to. **No secret**: each worker derives the day's link key itself from
  ``visits_secret`` (an app setting shared by the workers, never written to Redis) and
  the day; ``{e}`` is a one-way tag of that key, so workers with a different secret are
  detected. Someone who reads Redis cannot recompute a link hash from a client's
  address and user agent.
- ``link:{e}:{hash}``: keyed hash of (client address, user agent, host) -> visit id.
  Its TTL is the idle gap: a link lives no longer than the visit could.
- ``visit:{id}``: first/last seen, pages, entry route, and when the entry pageview was
  asked for (``asked``). No link. First and last are in whole seconds (hundredths when
  ``visit_gap`` is under 10 s, as in tests) of Redis server time: what the gap and the
  duration ranges need. ``asked`` is the app's time in milliseconds: it orders pageviews
  that reach Redis out of order, and a browser's next page is often asked for within the
  same second (a quick click, a redirect), which whole seconds could not order.
- ``open:{e}``: sorted set of visit ids by last-seen time; ``epochs``: the set of ``{e}``.

Visit data and the open index outlive a day's key by the gap and an hour, so visits left
open when every worker stops (a deploy, a crash, a quiet night) are still there for the
first sweep after the restart, which runs when the tracker starts. Only a Redis restart
(run without persistence, as advised) or a stop longer than a day loses them.

Every step runs as one Lua script on Redis's own clock, so workers with skewed clocks
agree, and a sweeper claims an idle visit (``ZREM`` inside the script) exactly once: only
the worker whose script removed it emits it. A pageview for a visit that was already
claimed starts a new one. When the secret changes, the old epoch's visits are all
claimed and its link keys deleted, so no link survives the rotation. Whether an epoch
is still current is decided inside the claiming script, so a sweeper that raced a
rotation can never end the new key's visits.

Recording costs one round trip per pageview, made on this store's link thread with a
short socket timeout (``visits_redis_timeout``), never on the request's thread or event
loop: the request hands the link material to a bounded queue, and the link thread counts
the pageview (an entry or not) once the link is made. Any Redis error fails open: it is counted in
``stats().errors``, logged (rate-limited, no data), and Redis is left alone for a few
seconds, during which pageviews are not linked.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from headcount._log import RateLimitedLog
from headcount._proxies import ClientAddress
from headcount._settings import TrackerSettings
from headcount._stats import Counters
from headcount._table import PageviewKey, VisitKey, with_entry
from headcount._visits._link import (
    KEY_LIFETIME,
    Clock,
    CountPageview,
    Emit,
    Linked,
    finished_visit,
    link_material,
    new_hasher,
)
from headcount.wire import route_problem

__all__ = ["RedisVisits", "SecretMismatch", "day_key", "key_prefix", "time_unit_ms"]


# After a failure, requests leave Redis alone this long: a dead Redis then costs at most
# one timeout per worker per pause, not one per pageview.
PAUSE_AFTER_ERROR: Final = 2.0
# Visit data outlives its link by this much, so that a sweep (every flush_interval)
# still finds a visit that went idle while every worker was busy or restarting.
_DATA_GRACE_MS: Final = 3600 * 1000
_CLAIM_CHUNK: Final = 500
_SWEEP_TIMEOUT: Final = 2.0
_SETTLE_TIMEOUT: Final = 2.0
# Links waiting for the link thread; beyond this they are skipped (the pageview is not).
_QUEUE_LIMIT: Final = 10_000

# KEYS: key. ARGV: "{epoch}:{day}", day, TTL ms. Moves the key forward to `day` unless it
# is already there (or beyond); returns the key's value and its TTL.
_KEY_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local day = tonumber(string.sub(current, 18))
  if day and day >= tonumber(ARGV[2]) then
    return {current, redis.call('PTTL', KEYS[1])}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {ARGV[1], tonumber(ARGV[3])}
"""

# KEYS: key, link, open, epochs. ARGV: epoch, new visit id, route, gap (units), data TTL
# ms, visit key prefix, index TTL ms, link TTL ms, time unit ms, the request's own time
# (ms). Returns 0 (the epoch is stale), 1 (new), 2 (continued). First and last are kept in
# whole units of Redis server time. Each worker links on its own thread, so a browser's
# next page, served by another worker, may reach Redis first: the entry route is that of
# the pageview asked for first ("asked"), whichever arrived first. A visit written by an
# older version (its entry time in units, under "at") keeps the entry it has.
_RECORD_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, 16) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now = string.format('%d', math.floor(ms / tonumber(ARGV[9])))
local gap = tonumber(ARGV[4])
local vid = redis.call('GET', KEYS[2])
if vid then
  local last = redis.call('ZSCORE', KEYS[3], vid)
  if last and tonumber(now) - tonumber(last) < gap then
    local data = ARGV[6] .. vid
    redis.call('HINCRBY', data, 'pages', 1)
    redis.call('HSET', data, 'last', now)
    local entry_asked = tonumber(redis.call('HGET', data, 'asked'))
    if entry_asked and tonumber(ARGV[10]) < entry_asked then
      redis.call('HSET', data, 'route', ARGV[3], 'asked', ARGV[10])
    end
    redis.call('PEXPIRE', data, ARGV[5])
    redis.call('ZADD', KEYS[3], now, vid)
    redis.call('PEXPIRE', KEYS[2], ARGV[8])
    return 2
  end
end
vid = ARGV[2]
local data = ARGV[6] .. vid
redis.call('SET', KEYS[2], vid, 'PX', ARGV[8])
redis.call('HSET', data, 'first', now, 'last', now, 'pages', 1, 'route', ARGV[3], 'asked', ARGV[10])
redis.call('PEXPIRE', data, ARGV[5])
redis.call('ZADD', KEYS[3], now, vid)
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('PEXPIRE', KEYS[4], ARGV[7])
return 1
"""

# KEYS: open, key. ARGV: epoch, gap (units), limit, visit key prefix, time unit ms.
# Claims the visits of
# `epoch` idle for the gap, or all of them once the epoch is no longer the current key's
# (an epoch never becomes current again). Returns 1 if it was current, 0 if not, then the
# claimed visits flattened as first, last, pages, route ("" each when the data expired).
_CLAIM_SCRIPT = """
local current = redis.call('GET', KEYS[2])
local live = current and string.sub(current, 1, 16) == ARGV[1]
local upper = '+inf'
if live then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  upper = string.format('%d', math.floor(ms / tonumber(ARGV[5])) - tonumber(ARGV[2]))
end
local vids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', upper, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {live and 1 or 0}
for _, vid in ipairs(vids) do
  redis.call('ZREM', KEYS[1], vid)
  local data = ARGV[4] .. vid
  local v = redis.call('HMGET', data, 'first', 'last', 'pages', 'route')
  redis.call('DEL', data)
  for i = 1, 4 do out[#out + 1] = v[i] or '' end
end
return out
"""


def key_prefix(settings: TrackerSettings) -> str:
    """The configured prefix plus a tag of the site, so sites sharing a database never mix."""
    tag = hashlib.blake2b(
        settings.write_token.encode(), digest_size=6, person=b"headcount-site"
    ).hexdigest()
    return f"{settings.visits_redis_prefix}{tag}:"


_DAY = 86400


def time_unit_ms(visit_gap: float) -> int:
    """The finest time Redis is given: whole seconds, or hundredths for the sub-10 s gaps
    that only tests use (a gap of a fraction of a second cannot be told in seconds)."""
    return 1000 if visit_gap >= 10 else 10


def day_key(visits_secret: str, day: int) -> tuple[str, bytes]:
    """The link key of one UTC day, and its epoch tag (a one-way hash of the key)."""
    master = hashlib.sha256(visits_secret.encode("utf-8")).digest()
    key = hmac.new(master, b"headcount-visit-link-day:%d" % day, hashlib.sha256).digest()
    epoch = hashlib.blake2b(key, digest_size=8, person=b"hc-visit-epoch").hexdigest()
    return epoch, key


class _LinkKey:
    __slots__ = ("epoch", "hasher", "valid_until")

    def __init__(self, epoch: str, secret: bytes, valid_until: float) -> None:
        self.epoch = epoch
        self.hasher = new_hasher(secret)
        self.valid_until = valid_until


# A pageview waiting for its link: monotonic time, wall time of the request, link
# material, route, and the pageview to count once linked (None: the caller counts it).
_Queued = tuple[float, float, bytes, str, PageviewKey | None]


class SecretMismatch(redis.DataError):
    """The day's key in Redis was made from another ``visits_secret``."""


class RedisVisits:
    """Open visits in a Redis shared by every worker of a site."""

    def __init__(
        self,
        settings: TrackerSettings,
        emit: Emit,
        counters: Counters,
        log: RateLimitedLog,
        *,
        clock: Clock = time.monotonic,
        addresses: ClientAddress | None = None,
        count_pageview: CountPageview | None = None,
    ) -> None:
        self._settings = settings
        self._emit = emit
        # Where a pageview is counted once the link thread made its link; without it (a
        # store used on its own) the caller counts pageviews under the referrer rule.
        self._count_pageview = count_pageview
        self._counters = counters
        self._log = log
        self._clock = clock
        self._addresses = addresses or ClientAddress(settings.trusted_proxies)
        gap_ms = max(1, round(settings.visit_gap * 1000))
        self._unit_ms = time_unit_ms(settings.visit_gap)
        self._link_ttl_ms = str(gap_ms)
        self._gap_units = str(max(1, -(-gap_ms // self._unit_ms)))
        # Visit data lives as long as its epoch's index: a visit left open when every
        # worker stopped is still there for the first sweep after they restart.
        self._index_ttl_ms = str(round((KEY_LIFETIME + settings.visit_gap) * 1000) + _DATA_GRACE_MS)
        self._data_ttl_ms = self._index_ttl_ms
        prefix = key_prefix(settings)
        self._secret_key = prefix + "key"
        self._epochs_key = prefix + "epochs"
        self._open_prefix = prefix + "open:"
        self._link_prefix = prefix + "link:"
        self._visit_prefix = prefix + "visit:"
        self._link_key: _LinkKey | None = None
        self._paused_until = 0.0
        self._clients_lock = threading.Lock()
        self._fast: Any = None  # the request path's client: short timeouts, no retries
        self._slow: Any = None  # the sweeper's client
        self._scripts: dict[str, Any] = {}
        self._checked_persistence = False
        self._swept = False
        self._closed = False
        self._queue: queue.Queue[_Queued | None] = queue.Queue(_QUEUE_LIMIT)
        self._worker: threading.Thread | None = None
        # Links queued and not yet made: settle() waits for them.
        self._pending = 0
        self._settled = threading.Condition(threading.Lock())

    # --- the request path ---------------------------------------------------------

    def record(
        self,
        peer: str | None,
        forwarded_for: str | None,
        user_agent: str | None,
        host: str | None,
        route: str,
        pageview: PageviewKey | None = None,
        now: float | None = None,
    ) -> bool | Linked | None:
        # The wall time of the request orders a visit's pageviews (below); the pause is on
        # this store's own (monotonic) clock.
        at = time.time() if now is None else now
        now = self._clock()
        if now < self._paused_until or self._closed:
            return None
        address = self._addresses.resolve(peer, forwarded_for)
        if address is None:
            return None
        material = link_material(address, user_agent, host)
        # A round trip here would hold the request's thread (WSGI) or stall every request
        # of its event loop (asyncio) for up to visits_redis_timeout: the link thread makes
        # it, then counts the pageview. The material waits in memory for a moment, as it
        # would in this call; a full queue drops the link, never the pageview (the caller
        # counts it).
        if self._count_pageview is None:
            pageview = None
        if self._enqueue((now, at, material, route, pageview)) and pageview is not None:
            return Linked.PENDING
        return None

    def settle(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the links handed to the link thread so far."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._settled.wait(left)

    def _enqueue(self, item: _Queued) -> bool:
        worker = self._worker
        if worker is None:
            with self._clients_lock:
                if self._worker is None and not self._closed:
                    self._worker = threading.Thread(
                        target=self._drain, name="headcount-visits-redis", daemon=True
                    )
                    self._worker.start()
        with self._settled:
            self._pending += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._done()
            self._counters.add(errors=1)
            self._log.warning("visits-queue", "headcount visit queue full: a link was skipped")
            return False
        return True

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            now, at, material, route, pageview = item
            # After a failure the queue empties without Redis: links are skipped, and
            # the pageviews counted under the referrer rule.
            paused = self._clock() < self._paused_until
            try:
                started = None if paused else self._record_now(now, at, material, route)
                if pageview is not None and self._count_pageview is not None:
                    counted = pageview if started is None else with_entry(pageview, started)
                    self._count_pageview(counted)
            except Exception as exc:  # the thread must outlive any one link
                self._counters.add(errors=1)
                self._log.warning(
                    "visits-link", "headcount visit link failed: %s", type(exc).__name__
                )
            finally:
                # Not held while this thread waits for the next pageview: on a quiet
                # site that wait lasts hours, and the material holds an address.
                del item, material
                self._done()

    def _done(self) -> None:
        with self._settled:
            self._pending -= 1
            if not self._pending:
                self._settled.notify_all()

    def _record_now(self, now: float, at: float, material: bytes, route: str) -> bool | None:
        """Link one pageview: True if it started a visit, False if it continued one."""
        try:
            client = self._client(fast=True)
            for _ in range(2):
                key = self._current_link_key(client, now)
                hasher = key.hasher.copy()
                hasher.update(material)
                outcome = self._scripts["record"](
                    keys=[
                        self._secret_key,
                        f"{self._link_prefix}{key.epoch}:{hasher.hexdigest()}",
                        self._open_prefix + key.epoch,
                        self._epochs_key,
                    ],
                    args=[
                        key.epoch,
                        secrets.token_hex(8),
                        route,
                        self._gap_units,
                        self._data_ttl_ms,
                        self._visit_prefix,
                        self._index_ttl_ms,
                        self._link_ttl_ms,
                        self._unit_ms,
                        int(at * 1000),
                    ],
                    client=client,
                )
                if outcome != 0:
                    return bool(outcome == 1)
                # The key was replaced under us: fetch the new one and try once more.
                self._link_key = None
        except redis.RedisError as exc:
            self._failed(exc)
        return None

    # --- the sender thread --------------------------------------------------------

    def sweep(self) -> None:
        # Links of pageviews that came before this sweep are made first: a visit the
        # sweep would otherwise end as idle may have just been continued.
        self.settle(_SETTLE_TIMEOUT)
        if self._closed or self._clock() < self._paused_until:
            return
        try:
            if not self._swept:
                # The first sweep runs while the app starts: a Redis that is down or hangs
                # must cost the start no more than one short request timeout.
                self._client(fast=True).ping()
                self._swept = True
            client = self._client(fast=False)
            self._check_persistence(client)
            for raw in client.smembers(self._epochs_key):
                epoch = raw.decode("ascii", "replace")
                if not self._claim(client, epoch):
                    self._forget_epoch(client, epoch)
        except redis.RedisError as exc:
            self._failed(exc)

    def close(self) -> None:
        # Links still queued go to Redis first, so they are not lost.
        worker = self._worker
        if worker is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            worker.join()
        # Other workers (or this app after a restart) continue the visits still open;
        # only those already over are emitted now.
        self.sweep()
        with self._clients_lock:
            self._closed = True
            for client in (self._fast, self._slow):
                if client is not None:
                    client.close()
            self._fast = self._slow = None

    def _claim(self, client: Any, epoch: str) -> bool:
        """Claim and emit the finished visits of ``epoch``; True while it is current."""
        while True:
            flat = self._scripts["claim"](
                keys=[self._open_prefix + epoch, self._secret_key],
                args=[epoch, self._gap_units, _CLAIM_CHUNK, self._visit_prefix, self._unit_ms],
                client=client,
            )
            live: bool = flat[0] == 1
            self._emit_claimed(flat[1:])
            if len(flat) - 1 < 4 * _CLAIM_CHUNK:
                return live

    def _emit_claimed(self, flat: Sequence[bytes]) -> None:
        finished: list[VisitKey] = []
        unusable = 0
        for i in range(0, len(flat) - 3, 4):
            try:
                first, last, pages = int(flat[i]), int(flat[i + 1]), int(flat[i + 2])
                first, last = first * self._unit_ms, last * self._unit_ms
                route = flat[i + 3].decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                unusable += 1  # its data had expired, or was not ours
                continue
            if pages < 1 or route_problem(route) is not None:
                unusable += 1
                continue
            start_hour = first // 1000 // 3600 * 3600
            finished.append(finished_visit(start_hour, route, (last - first) / 1000, pages))
        if finished:
            self._emit(finished)
        if unusable:
            self._counters.add(errors=unusable)
            self._log.warning(
                "visits-lost", "headcount lost %d visits whose Redis data had expired", unusable
            )

    def _forget_epoch(self, client: Any, epoch: str) -> None:
        """Delete what is left of a replaced key's links; drop the epoch once it is empty."""
        pattern = f"{self._link_prefix}{epoch}:*"
        batch: list[bytes] = []
        for name in client.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        if not client.exists(self._open_prefix + epoch):
            client.srem(self._epochs_key, epoch)

    # --- shared -------------------------------------------------------------------

    def _current_link_key(self, client: Any, now: float) -> _LinkKey:
        key = self._link_key
        if key is not None and now < key.valid_until:
            return key
        seconds = int(client.time()[0])  # Redis's clock: every worker agrees on the day
        day = self.day_of(seconds)
        epoch, _ = day_key(self._settings.visits_secret, day)
        left_ms = (_DAY - seconds % _DAY) * 1000
        value, ttl_ms = self._scripts["key"](
            keys=[self._secret_key],
            # The day's epoch outlives the day by the gap and an hour, like its data.
            args=[f"{epoch}:{day}", day, left_ms + int(self._link_ttl_ms) + _DATA_GRACE_MS],
            client=client,
        )
        stored_epoch, _, stored_day = value.decode("ascii").partition(":")
        if not stored_day.isdigit():
            raise redis.DataError("the visit key in Redis is not one Headcount wrote")
        # Another worker may already have moved on to the next day: use its day's key.
        epoch, secret = day_key(self._settings.visits_secret, int(stored_day))
        if stored_epoch != epoch:
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds + ttl_ms / 1000))
            self._log.warning(
                "visits-secret",
                "headcount: the visit key in Redis was made with another visits_secret; "
                "every worker of a site must share one (pageviews are counted, not linked). "
                "If every worker now has a new secret on purpose, delete the Redis key %r "
                "to link again at once; otherwise it expires at %s",
                self._secret_key,
                until,
            )
            raise SecretMismatch("visits_secret differs between workers")
        lifetime = min(ttl_ms, left_ms) / 1000 if ttl_ms > 0 else 1.0
        key = _LinkKey(epoch, secret, now + lifetime)
        self._link_key = key
        return key

    def day_of(self, seconds: int) -> int:
        """The UTC day a Redis timestamp falls on; a visit never spans two days' keys."""
        return seconds // _DAY

    def _client(self, *, fast: bool) -> Any:
        client = self._fast if fast else self._slow
        if client is not None:
            return client
        with self._clients_lock:
            if self._fast is None:
                timeout = self._settings.visits_redis_timeout
                url = self._settings.visits_store
                fast_client: Any = redis.Redis.from_url(
                    url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),
                )
                slow_timeout = max(_SWEEP_TIMEOUT, timeout)
                self._slow = redis.Redis.from_url(
                    url,
                    socket_timeout=slow_timeout,
                    socket_connect_timeout=slow_timeout,
                    retry=Retry(NoBackoff(), 1),
                )
                self._scripts = {
                    "key": fast_client.register_script(_KEY_SCRIPT),
                    "record": fast_client.register_script(_RECORD_SCRIPT),
                    "claim": fast_client.register_script(_CLAIM_SCRIPT),
                }
                # Published last: a thread that sees the fast client without taking the
                # lock must find the scripts and the slow client ready too.
                self._fast = fast_client
            return self._fast if fast else self._slow

    def _check_persistence(self, client: Any) -> None:
        """Warn once when Redis writes its data to disk: the links would reach it too."""
        if self._checked_persistence:
            return
        self._checked_persistence = True
        try:
            config = client.config_get("save") | client.config_get("appendonly")
        except redis.RedisError:
            return  # managed Redis often forbids CONFIG; nothing to learn then
        save = config.get("save") or config.get(b"save")
        appendonly = config.get("appendonly") or config.get(b"appendonly")
        if save or appendonly in ("yes", b"yes"):
            self._log.warning(
                "visits-persistence",
                "headcount: the Redis used for visits persists data to disk (save/appendonly);"
                " turn persistence off there so visit links never reach a disk",
            )

    def _failed(self, exc: Exception) -> None:
        self._paused_until = self._clock() + PAUSE_AFTER_ERROR
        self._counters.add(errors=1)
        self._log.warning(
            "visits-redis",
            "headcount could not use Redis for visits (%s); pageviews are not linked meanwhile",
            type(exc).__name__,
        )
