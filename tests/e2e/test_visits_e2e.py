"""Visits end to end: scripted visitors with known pageview sequences and gaps browse the
Flask example under gunicorn (4 workers) behind a trusted proxy address, the SDK sends
to the real collector through a capturing forwarder, and the released visit counts are
compared with the truth.

With the Redis store the four workers share visits, so the counts must match exactly.
In memory each worker links only the requests it served itself, so one visit whose
pageviews landed on several workers is counted as several shorter ones: that error is
measured and printed, not asserted.

Every run also looks for the visitors' addresses and user agents, and hashes of them,
everywhere they must never be: the collector's database files and log, the app's log
and every byte the SDK sent.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import secrets
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis

from headcount._bots import is_bot
from headcount.wire import DURATION_LABELS, Batch, pages_label
from tests._servers import CollectorProcess, ServerProcess, free_port, spawn
from tests.conftest import SHOP_READ_TOKEN, SHOP_WRITE_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("HEADCOUNT_TEST_REDIS", "redis://127.0.0.1:6379/0")
VISIT_GAP = 2.0
SAME_VISIT = 0.3  # pause within a visit: far below the gap, even on a loaded machine
LONG_STEP = 1.0  # the steps of the one long visit
NEW_VISIT = 3.2  # pause that ends a visit: far above the gap
ROUTES = {"/": "/", "/about": "/about", "/users/": "/users", "/contact": "/contact"}
ROUTES.update({f"/users/{i}": "/users/{id}" for i in (1, 2, 3)})

VisitTruth = tuple[str, str, str]  # entry route, duration label, pages label


# --- the scripted visitors -----------------------------------------------------------


@dataclass(frozen=True)
class Visitor:
    address: str
    user_agent: str
    # Each visit: (pause before it, the paths it views, the pause between its pages).
    visits: tuple[tuple[float, tuple[str, ...], float], ...]

    def truth(self) -> list[VisitTruth]:
        found: list[VisitTruth] = []
        for _, paths, step in self.visits:
            pages = len(paths)
            duration = DURATION_LABELS[0] if pages == 1 else _duration((pages - 1) * step)
            found.append((ROUTES[paths[0]], duration, pages_label(pages)))
        return found


def _duration(seconds: float) -> str:
    # Only the ranges the script can produce, with wide margins around each edge.
    assert seconds < 8 or 10.5 < seconds < 25, seconds
    return "<10s" if seconds < 8 else "10s-30s"


def scripted_visitors(run: str) -> list[Visitor]:
    rng = random.Random(20261130)
    paths = list(ROUTES)
    visitors: list[Visitor] = []
    for i in range(24):
        # Some visitors come back after a pause longer than the gap: a second visit.
        count = 2 if i % 4 == 0 else 1
        visits = []
        for n in range(count):
            pages = rng.choice([1, 1, 2, 3, 4, 6, 11])
            chosen = tuple(rng.choice(paths) for _ in range(pages))
            visits.append((NEW_VISIT if n else rng.uniform(0, 1.5), chosen, SAME_VISIT))
        visitors.append(
            Visitor(
                address=f"198.51.{100 + i // 200}.{i % 200 + 20}",
                user_agent=_browser(run, i),
                visits=tuple(visits),
            )
        )
    # One visit of twelve pages a second apart: over ten seconds long.
    visitors.append(
        Visitor("203.0.113.200", _browser(run, 99), ((0.0, ("/",) + ("/about",) * 11, LONG_STEP),))
    )
    return visitors


@dataclass(frozen=True)
class LinkBias:
    """People whose link key (address, user agent, host) does not match who they are:
    what any linking without identifiers must get wrong, measured rather than hidden."""

    name: str
    # Each pageview: seconds after the start, client address, user agent, path.
    views: tuple[tuple[float, str, str, str], ...]
    truth: tuple[VisitTruth, ...]  # the visits people made
    linked: tuple[VisitTruth, ...]  # the visits a link key can see

    def visitors(self) -> list[Visitor]:
        """For the canary: every address and user agent the case used."""
        return [Visitor(address, agent, ()) for _, address, agent, _ in self.views]


def link_biases(run: str) -> list[LinkBias]:
    colleagues = _browser(run, 200)  # one company browser image, one NAT address
    phone = _browser(run, 201)
    return [
        LinkBias(
            "two colleagues behind one NAT with the same browser",
            ((0.0, "192.0.2.10", colleagues, "/"), (0.1, "192.0.2.10", colleagues, "/"),
             (0.3, "192.0.2.10", colleagues, "/about")),
            truth=(("/", "<10s", "2"), ("/", "0s", "1")),
            linked=(("/", "<10s", "3-4"),),
        ),
        LinkBias(
            "a phone moving from Wi-Fi to 4G mid-visit",
            ((0.0, "192.0.2.20", phone, "/"), (0.3, "192.0.2.20", phone, "/about"),
             (0.6, "198.18.0.7", phone, "/contact"), (0.9, "198.18.0.7", phone, "/about")),
            truth=(("/", "<10s", "3-4"),),
            linked=(("/", "<10s", "2"), ("/contact", "<10s", "2")),
        ),
    ]  # fmt: skip


def browse_bias(base: str, case: LinkBias, errors: list[str]) -> None:
    started = time.monotonic()
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            for delay, address, agent, path in case.views:
                time.sleep(max(0.0, started + delay - time.monotonic()))
                headers = {"User-Agent": agent, "X-Forwarded-For": address}
                if client.get(path, headers=headers).status_code != 200:
                    errors.append(f"{case.name} {path}: not 200")
    except httpx.HTTPError as exc:
        errors.append(repr(exc))


def _browser(run: str, i: int) -> str:
    agent = f"Mozilla/5.0 (X11; Linux x86_64; rv:128.0; hc{run}v{i}) Gecko/20100101 Firefox/128.0"
    assert not is_bot(agent)
    return agent


def browse(base: str, visitor: Visitor, errors: list[str]) -> None:
    headers = {
        "User-Agent": visitor.user_agent,
        # What a proxy at 127.0.0.1 appends; the forged hop on the left must be ignored.
        "X-Forwarded-For": f"6.6.6.{secrets.randbelow(250)}, {visitor.address}",
    }
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            for pause, paths, step in visitor.visits:
                time.sleep(pause)
                for n, path in enumerate(paths):
                    if n:
                        time.sleep(step)
                    if client.get(path).status_code != 200:
                        errors.append(f"{path}: not 200")
                    if n == 1:
                        # Not pageviews: they neither count as pages nor break the visit.
                        client.get("/no/such/page")
                        client.get("/report.csv")
    except httpx.HTTPError as exc:
        errors.append(repr(exc))


# --- a forwarder that keeps what the SDK sent ------------------------------------------


class CapturingForwarder:
    def __init__(self, upstream: str) -> None:
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        forwarder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") else raw
                with forwarder.lock:
                    forwarder.bodies.append(body)
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() in ("authorization", "content-type", "content-encoding")
                }
                reply = httpx.post(upstream + self.path, content=raw, headers=headers, timeout=10)
                self.send_response(reply.status_code)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def batches(self) -> list[Batch]:
        with self.lock:
            # Strict decoding: a batch carrying any field beyond the schema fails here.
            return [msgspec.json.decode(body, type=Batch) for body in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# `collector` is the real collector fixture from tests/e2e/conftest.py.


@pytest.fixture
def forwarder(collector: CollectorProcess) -> Iterator[CapturingForwarder]:
    capture = CapturingForwarder(collector.url)
    yield capture
    capture.close()


# --- the app under gunicorn ---------------------------------------------------------


def run_gunicorn(endpoint: str, log: Path, extra_env: dict[str, str]) -> tuple[ServerProcess, str]:
    port = free_port()
    env = {
        **os.environ,
        "HEADCOUNT_ENDPOINT": endpoint,
        "HEADCOUNT_WRITE_TOKEN": SHOP_WRITE_TOKEN,
        "HEADCOUNT_FLUSH_INTERVAL": "1",
        # Counts while the app runs, not an hour later.
        "HEADCOUNT_SEND_SCHEDULE": "immediate",
        "HEADCOUNT_VISIT_GAP": str(VISIT_GAP),
        "HEADCOUNT_TRUSTED_PROXIES": "127.0.0.1",
        **extra_env,
    }
    env.pop("HEADCOUNT_ENABLED", None)
    argv = [
        str(BIN / "gunicorn"), "--workers=4", f"--bind=127.0.0.1:{port}",
        "--config=examples/flask_app/gunicorn.conf.py", "--graceful-timeout=10",
        "examples.flask_app.app:app",
    ]  # fmt: skip
    server = spawn("gunicorn", argv, log, cwd=REPO_ROOT, env=env)
    server.wait_until(server.mentions(b"Booting worker", times=4))
    return server, f"http://127.0.0.1:{port}"


# --- reading and comparing ------------------------------------------------------------


def released(collector_url: str, metric: str, by: str) -> Counter[tuple[str, ...]]:
    response = httpx.get(
        collector_url + "/v1/stats",
        params={"metric": metric, "interval": "total", "by": by},
        headers={"Authorization": f"Bearer {SHOP_READ_TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    assert body["k"] == 1, body
    assert body["withheld"] == 0, body
    names = by.split(",") if by else []
    counts: Counter[tuple[str, ...]] = Counter()
    for row in body["rows"]:
        counts[tuple(str(row[name]) for name in names)] += int(row["count"])
    return counts


def distance(truth: Counter[str], seen: Counter[str]) -> float:
    """Total variation distance between two distributions (0: same shares, 1: disjoint)."""
    total_truth, total_seen = sum(truth.values()), sum(seen.values())
    keys = set(truth) | set(seen)
    return sum(abs(truth[k] / total_truth - seen[k] / max(total_seen, 1)) for k in keys) / 2


def report(mode: str, truth: Counter[VisitTruth], seen: Counter[VisitTruth]) -> None:
    def by(index: int, counts: Counter[VisitTruth]) -> Counter[str]:
        out: Counter[str] = Counter()
        for key, n in counts.items():
            out[key[index]] += n
        return out

    true_total, seen_total = sum(truth.values()), sum(seen.values())
    print(f"\n[visits e2e, {mode} store, 4 gunicorn workers]")
    print(f"  visits: truth {true_total}, released {seen_total} "
          f"({(seen_total - true_total) / true_total:+.0%})")  # fmt: skip
    for name, index in (("duration", 1), ("pages", 2), ("entry route", 0)):
        t, s = by(index, truth), by(index, seen)
        print(f"  {name}: total variation distance {distance(t, s):.3f}")
        print(f"    truth    {dict(sorted(t.items()))}")
        print(f"    released {dict(sorted(s.items()))}")
    bounce_truth = by(2, truth)["1"] / true_total
    bounce_seen = by(2, seen)["1"] / max(seen_total, 1)
    print(f"  bounce rate: truth {bounce_truth:.3f}, released {bounce_seen:.3f}")


# --- the canary -------------------------------------------------------------------------


HEX_RUN = re.compile(rb"[0-9a-f]{16,}")


def needles(visitors: list[Visitor]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for visitor in visitors:
        for name, value in (("address", visitor.address), ("user agent", visitor.user_agent)):
            raw = value.encode()
            found[f"{name} {value}"] = raw.lower()
            for algorithm in ("sha256", "md5", "sha1", "blake2b"):
                digest = hashlib.new(algorithm, raw).hexdigest().encode()
                found[f"{algorithm} of {name} {value}"] = digest
        marker = visitor.user_agent.split("; ")[-1].split(")")[0]
        found[f"user agent marker {marker}"] = marker.encode().lower()
    return found


def hunt(visitors: list[Visitor], places: dict[str, bytes]) -> list[str]:
    wanted = needles(visitors)
    return [
        f"{what} in {where}"
        for where, haystack in places.items()
        for what, needle in wanted.items()
        if needle in haystack.lower()
    ]


def check_canary(
    visitors: list[Visitor],
    collector: CollectorProcess,
    forwarder: CapturingForwarder,
    app_log: Path,
) -> None:
    places = {"collector log": collector.log_path.read_bytes(), "app log": app_log.read_bytes()}
    for path in collector.db_path.parent.glob(collector.db_path.name + "*"):
        places[path.name] = path.read_bytes()  # the database, its WAL and shared memory
    assert any(name.endswith("-wal") for name in places), list(places)
    sent = b"\n".join(forwarder.bodies)
    places["what the SDK sent"] = sent
    assert hunt(visitors, places) == []
    # A link key would be a run of hex digits: the batch ids are the only ones sent.
    batch_ids = {batch.batch_id.encode() for batch in forwarder.batches()}
    assert set(HEX_RUN.findall(sent)) == batch_ids


# --- the test ---------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
    prefix = f"headcount-e2e:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class Run:
    visitors: list[Visitor]
    biases: list[LinkBias]
    truth: Counter[VisitTruth]  # what people did
    linkable: Counter[VisitTruth]  # what a link key can see: the truth, with the biases
    seen: Counter[VisitTruth]  # what the collector released
    entries: int  # released metric=entries
    log: Path

    def canary_visitors(self) -> list[Visitor]:
        return self.visitors + [v for case in self.biases for v in case.visitors()]


def run_visitors(
    tmp_path: Path,
    collector: CollectorProcess,
    forwarder: CapturingForwarder,
    extra_env: dict[str, str],
) -> Run:
    run = secrets.token_hex(4)
    visitors = scripted_visitors(run)
    biases = link_biases(run)
    truth: Counter[VisitTruth] = Counter(v for visitor in visitors for v in visitor.truth())
    linkable = truth.copy()
    for case in biases:
        truth.update(case.truth)
        linkable.update(case.linked)
    log = tmp_path / "gunicorn.log"
    server, base = run_gunicorn(forwarder.url, log, extra_env)
    try:
        errors: list[str] = []
        threads = [threading.Thread(target=browse, args=(base, v, errors)) for v in visitors]
        threads += [
            threading.Thread(target=browse_bias, args=(base, case, errors)) for case in biases
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        # Every visit is idle now; the workers' sweeps (and their exit) end them all.
        time.sleep(VISIT_GAP + 0.5)
    finally:
        assert server.stop(timeout=30) == 0, server.log_text()
    pageviews = sum(len(paths) for visitor in visitors for _, paths, _ in visitor.visits)
    pageviews += sum(len(case.views) for case in biases)
    assert sum(released(collector.url, "pageviews", "").values()) == pageviews
    seen: Counter[VisitTruth] = Counter()
    for key, n in released(collector.url, "visits", "route,duration,pages").items():
        seen[(key[0], key[1], key[2])] += n
    entries = sum(released(collector.url, "entries", "").values())
    return Run(visitors, biases, truth, linkable, seen, entries, log)


def report_link_bias(run: Run) -> None:
    for case in run.biases:
        people, linked = Counter(case.truth), Counter(case.linked)
        print(f"  link-key bias, {case.name}: {sum(people.values())} visit(s) made,"
              f" {sum(linked.values())} linked; pages {dict(people)} -> {dict(linked)}")  # fmt: skip
    bounce = {
        name: sum(n for key, n in counts.items() if key[2] == "1") / sum(counts.values())
        for name, counts in (("people", run.truth), ("link key", run.linkable))
    }
    print(f"  bounce rate, people {bounce['people']:.3f}, link key {bounce['link key']:.3f}")


def test_visits_in_memory_under_four_workers(
    tmp_path: Path, collector: CollectorProcess, forwarder: CapturingForwarder
) -> None:
    run = run_visitors(tmp_path, collector, forwarder, {})
    report("memory", run.linkable, run.seen)
    report_link_bias(run)
    assert {batch.visits for batch in forwarder.batches()} == {"memory"}
    # Splitting a visit between workers can only add visits, never lose pageviews.
    assert sum(run.seen.values()) >= sum(run.linkable.values())
    # Each visit the SDK saw start is one entry, whichever worker saw it.
    assert run.entries == sum(run.seen.values())
    check_canary(run.canary_visitors(), collector, forwarder, run.log)


@pytest.mark.redis
def test_visits_in_redis_under_four_workers_match_the_truth_exactly(
    tmp_path: Path,
    collector: CollectorProcess,
    forwarder: CapturingForwarder,
    redis_prefix: str,
) -> None:
    # No visit spans two days' link keys, by design: a run that began in the last seconds
    # of a UTC day (on Redis's clock) would split visits the truth does not.
    seconds, _ = redis.Redis.from_url(REDIS_URL, socket_timeout=5).time()
    left_of_the_day = 86400 - seconds % 86400
    if left_of_the_day < 40:
        time.sleep(left_of_the_day + 1)
    run = run_visitors(
        tmp_path,
        collector,
        forwarder,
        {
            "HEADCOUNT_VISITS_STORE": REDIS_URL,
            "HEADCOUNT_VISITS_REDIS_PREFIX": redis_prefix,
            "HEADCOUNT_VISITS_SECRET": "e2e-visits-secret-" + redis_prefix[-32:],
            # Generous for a loaded CI machine: a timed-out update would split a visit.
            "HEADCOUNT_VISITS_REDIS_TIMEOUT": "2",
        },
    )
    report("redis", run.linkable, run.seen)
    report_link_bias(run)
    assert {batch.visits for batch in forwarder.batches()} == {"redis"}
    # Exact, up to what no link key can know: a shared address and browser is one
    # visitor, a changed address is a new one.
    assert run.seen == run.linkable
    assert run.seen != run.truth
    # An entry is the first pageview of a visit: one per visit, bookmarks mid-visit or not.
    assert run.entries == sum(run.seen.values())
    check_canary(run.canary_visitors(), collector, forwarder, run.log)
