"""``headcount import`` as a user runs it: the real command against a real collector,
the scripted traffic in every format, with the released counts compared to the truth."""

from __future__ import annotations

import gzip
import os
import pty
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headcount.logimport._formats import parser_for
from headcount.logimport._importer import Importer
from headcount.logimport._reader import LineSource
from headcount.logimport._routes import load_resolver
from tests._servers import CollectorProcess, free_port, start_collector
from tests.logimport._scenario import (
    BIN,
    FIREFOX,
    FORMATS,
    HOST,
    SCENARIO,
    VISITS,
    Hit,
    SiteTokens,
    expected_bots,
    expected_pageviews_by_route,
    render,
    run_import,
    sites_toml,
    start_hour,
    stats,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SITES = [f"fmt{index}" for index in range(len(FORMATS))] + [
    "common",
    "gzip",
    "bad",
    "skip",
    "again",
    "stdin",
    "resume",
    "append",
    "recent",
    "follow",
]


@pytest.fixture(scope="module")
def collector(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CollectorProcess, dict[str, SiteTokens]]]:
    tmp = tmp_path_factory.mktemp("import-collector")
    text, tokens = sites_toml(SITES)
    site_file = tmp / "sites.toml"
    site_file.write_text(text, encoding="utf-8")
    server = start_collector(tmp, site_file)
    try:
        yield server, tokens
    finally:
        server.stop()


def _assert_scenario_counted(url: str, site: SiteTokens) -> None:
    assert stats(url, site, "pageviews", "route") == expected_pageviews_by_route()
    assert stats(url, site, "pageviews", "referrer") == Counter(
        hit.pageview[1] for hit in SCENARIO if hit.pageview
    )
    assert stats(url, site, "pageviews", "utm_source") == Counter({"newsletter": 1, "(none)": 3})
    assert stats(url, site, "requests")[""] == len(SCENARIO)
    assert stats(url, site, "requests", "route")["(unmatched)"] == 1
    assert stats(url, site, "requests", "status") == Counter(
        f"{hit.status // 100}xx" for hit in SCENARIO
    )
    assert stats(url, site, "bots", "category") == expected_bots()
    assert stats(url, site, "visits")[""] == VISITS
    assert stats(url, site, "entries")[""] == VISITS


@pytest.mark.parametrize("index", range(len(FORMATS)), ids=[f.split(" ")[0] for f in FORMATS])
def test_every_format_counts_exactly(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path, index: int
) -> None:
    server, tokens = collector
    site = tokens[f"fmt{index}"]
    fmt = FORMATS[index]
    log = tmp_path / "access.log"
    log.write_text(render(fmt, start_hour()), encoding="utf-8")
    done = run_import(server.url, site.write, "--format", fmt, str(log))
    assert done.returncode == 0, done.stderr
    assert f"lines read: {len(SCENARIO)}" in done.stderr
    assert "hours covered: 2" in done.stderr
    assert "lines/s" not in done.stderr  # no progress bar when not on a terminal
    _assert_scenario_counted(server.url, site)


def test_latency_comes_from_the_log_when_it_has_one(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]],
) -> None:
    from headcount._coarsen import latency_of

    server, tokens = collector
    by_latency = stats(server.url, tokens["fmt2"], "requests", "latency")  # nginx-json
    assert by_latency == Counter(latency_of(hit.elapsed) for hit in SCENARIO)


def test_latency_is_unknown_when_the_log_has_no_request_time(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]],
) -> None:
    server, tokens = collector
    by_latency = stats(server.url, tokens["fmt0"], "requests", "latency")  # combined
    assert by_latency == Counter({"unknown": len(SCENARIO)})


def test_common_format_has_no_user_agent_so_the_sdk_counts_bots(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    # The SDK counts a request without a user agent as a bot ("other"); the importer
    # applies the same rule rather than guessing.
    server, tokens = collector
    log = tmp_path / "access.log"
    log.write_text(render("common", start_hour()), encoding="utf-8")
    done = run_import(server.url, tokens["common"].write, "--format", "common", str(log))
    assert done.returncode == 0, done.stderr
    assert stats(server.url, tokens["common"], "bots", "category") == Counter(
        {"other": len(SCENARIO)}
    )
    assert stats(server.url, tokens["common"], "pageviews") == Counter()


def test_gzip_and_plain_files_in_one_run(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = collector
    text = render("combined", start_hour()).splitlines(keepends=True)
    older = tmp_path / "access.log.2.gz"
    older.write_bytes(gzip.compress("".join(text[:5]).encode()))
    newer = tmp_path / "access.log.1"
    newer.write_text("".join(text[5:]), encoding="utf-8")
    done = run_import(server.url, tokens["gzip"].write, str(older), str(newer))
    assert done.returncode == 0, done.stderr
    _assert_scenario_counted(server.url, tokens["gzip"])


def test_standard_input(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]],
) -> None:
    server, tokens = collector
    body = render("combined", start_hour()).encode()
    done = run_import(server.url, tokens["stdin"].write, "-", stdin=body)
    assert done.returncode == 0, done.stderr
    _assert_scenario_counted(server.url, tokens["stdin"])


def test_a_bad_line_stops_the_import_with_its_number_and_sends_nothing(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = collector
    lines = render("combined", start_hour()).splitlines(keepends=True)
    secret_ua = "Mozilla/5.0 SecretAgent-7f3a"
    lines.insert(3, f'198.51.100.77 - - [garbage] "GET / HTTP/1.1" 200 1 "-" "{secret_ua}"\n')
    log = tmp_path / "access.log"
    log.write_text("".join(lines), encoding="utf-8")
    done = run_import(server.url, tokens["bad"].write, str(log))
    assert done.returncode == 1
    assert f"{log}:4:" in done.stderr
    # The message names the problem, never the line's address or user agent.
    assert "198.51.100.77" not in done.stderr
    assert secret_ua not in done.stderr
    assert stats(server.url, tokens["bad"], "requests") == Counter()

    skipped = run_import(server.url, tokens["skip"].write, "--skip-bad-lines", str(log))
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped (bad line): 1" in skipped.stderr
    _assert_scenario_counted(server.url, tokens["skip"])


def test_reimport_counts_nothing_twice(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = collector
    log = tmp_path / "access.log"
    log.write_text(render("combined", start_hour()), encoding="utf-8")
    dry = run_import(server.url, tokens["again"].write, "--dry-run", str(log))
    assert dry.returncode == 0, dry.stderr
    assert '"batch_id"' in dry.stdout
    assert "dry run: nothing was sent" in dry.stderr
    assert stats(server.url, tokens["again"], "requests") == Counter()

    first = run_import(server.url, tokens["again"].write, str(log))
    assert first.returncode == 0, first.stderr
    second = run_import(server.url, tokens["again"].write, str(log))
    assert second.returncode == 0, second.stderr
    # Its hours now hold data: the default covers only hours before the first stored one.
    assert f"skipped (hours already stored): {len(SCENARIO)}" in second.stderr
    _assert_scenario_counted(server.url, tokens["again"])


def test_an_import_stopped_part_way_is_completed_by_running_it_again(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    # Hours are sent newest first, so an import that stopped part-way has stored its
    # newest hours; here the newest hour is stored by a first run over those lines only.
    server, tokens = collector
    site = tokens["resume"]
    base = start_hour()
    newest = tuple(hit for hit in SCENARIO if hit.offset >= 3600)
    log = tmp_path / "access.log"
    log.write_text(render("combined", base, newest), encoding="utf-8")
    assert run_import(server.url, site.write, str(log)).returncode == 0
    log.write_text(render("combined", base), encoding="utf-8")
    done = run_import(server.url, site.write, str(log))
    assert done.returncode == 0, done.stderr
    assert f"skipped (hours already stored): {len(newest)}" in done.stderr
    assert stats(server.url, site, "requests")[""] == len(SCENARIO)
    assert stats(server.url, site, "pageviews", "route") == expected_pageviews_by_route()


def test_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    lines = render("combined", start_hour()) * 1000  # 10,000 lines, progress every 8,192
    log = tmp_path / "access.log"
    log.write_text(lines, encoding="utf-8")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [str(BIN / "headcount"), "import", "--dry-run", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0
    text = output.decode()
    assert "8,192 lines" in text
    assert "lines/s" in text
    assert "lines read: 10000" in text


def test_append_fills_only_hours_after_the_last_stored_one(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    # A site counted from its logs alone: each rotated log is imported after the last.
    server, tokens = collector
    site = tokens["append"]
    base = start_hour()
    first_day = tuple(hit for hit in SCENARIO if hit.offset < 3600)
    log = tmp_path / "access.log.1"
    log.write_text(render("combined", base, first_day), encoding="utf-8")
    assert run_import(server.url, site.write, "--append", str(log)).returncode == 0
    # The next rotation repeats the first hour's lines (overlapping rotations happen).
    log.write_text(render("combined", base), encoding="utf-8")
    done = run_import(server.url, site.write, "--append", str(log))
    assert done.returncode == 0, done.stderr
    assert f"skipped (hours with data): {len(first_day)}" in done.stderr
    assert stats(server.url, site, "requests")[""] == len(SCENARIO)
    assert stats(server.url, site, "pageviews", "route") == expected_pageviews_by_route()


def test_an_older_collector_without_the_import_endpoint_takes_the_batches_on_live_ingest(
    tmp_path: Path,
) -> None:
    now_hour = int(time.time()) // 3600 * 3600
    posted: list[str] = []

    def older_collector(request: httpx.Request) -> httpx.Response:
        posted.append(request.url.path)
        if request.url.path == "/v1/import/state":
            # What a collector from before the import endpoint answers: no origin.
            return httpx.Response(200, json={"first_hour": None, "sealed_until": None})
        if request.url.path == "/v1/ingest":
            return httpx.Response(202, json={"accepted": 1})
        if request.url.path == "/v1/import/seal":
            return httpx.Response(200, json={"sealed_until": None})
        return httpx.Response(404, json={"error": "Not Found"})

    log = tmp_path / "access.log"
    log.write_text(render("combined", now_hour - 3 * 3600), encoding="utf-8")
    with httpx.Client(
        base_url="http://collector.test", transport=httpx.MockTransport(older_collector)
    ) as client:
        importer = Importer(
            parser_for("combined"),
            load_resolver(None, None, None),
            client=client,
            tracker_options={"visits_store": "memory"},
            host=HOST,
        )
        summary = importer.run(LineSource([str(log)]))
    assert summary.accepted > 0
    # Refused once on the import endpoint, then every batch on live ingest.
    assert posted.count("/v1/import/ingest") == 1
    assert posted.count("/v1/ingest") == summary.accepted
    assert posted[-1] == "/v1/import/seal"


def test_the_command_names_what_went_wrong_and_what_to_do(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("this is not a combined log line\n", encoding="utf-8")
    bad = run_import(None, None, "--dry-run", str(log))
    assert bad.returncode == 1
    assert f"{log}:1: the line does not match the format" in bad.stderr
    assert "--format combined" in bad.stderr
    assert "--skip-bad-lines" in bad.stderr
    good_line = (
        '203.0.113.9 - - [01/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n'
    )
    log.write_text(good_line, encoding="utf-8")
    unreachable = f"http://127.0.0.1:{free_port()}"
    refused = run_import(unreachable, "hcw_token", str(log))
    assert refused.returncode == 1
    assert f"cannot reach the collector at {unreachable}" in refused.stderr
    assert "hcw_token" not in refused.stderr
    version = subprocess.run(
        [str(BIN / "headcount"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0
    assert version.stdout.startswith("headcount ")


def test_a_history_import_leaves_the_hours_whose_live_counts_may_still_arrive(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    """A site that just installed the SDK: its first hours' live counts come during the
    next hour, so an import must not fill them, or both would be counted."""
    server, tokens = collector
    site = tokens["recent"]
    if 3600 - time.time() % 3600 < 30:
        time.sleep(31)  # the test and the collector must see the same current hour
    now = int(time.time())
    hours_back = (4, 3, 2, 1)  # hour starts before the current one
    hits = tuple(
        Hit(-back * 3600 + 60, "203.0.113.7", FIREFOX, "GET", "/about", 200, "text/html")
        for back in hours_back
    )
    log = tmp_path / "access.log"
    log.write_text(render("combined", now // 3600 * 3600, hits), encoding="utf-8")
    done = run_import(server.url, site.write, str(log))
    assert done.returncode == 0, done.stderr
    # The default grace is 2 hours: the hour before last and the last one (and this one)
    # may still receive live counts.
    arriving = sum(1 for back in hours_back if (now // 3600 - back) * 3600 + 3 * 3600 > now)
    assert arriving == 2
    assert f"skipped (live counts may still arrive): {arriving}" in done.stderr
    assert stats(server.url, site, "requests")[""] == len(hits) - arriving


def test_refusals_name_the_real_reason_and_follow_or_append_import_recent_hours() -> None:
    from headcount.logimport._importer import SiteState

    now_hour = int(time.time()) // 3600 * 3600
    state = SiteState(newest_hour=now_hour, arriving_from=now_hour - 7200)
    assert state.refusal(now_hour + 3600) == "in the future"  # never "try again later"
    assert state.refusal(now_hour) == "live counts may still arrive"
    assert state.refusal(now_hour - 10800) is None
    appending = SiteState(newest_hour=now_hour, arriving_from=now_hour - 7200, append=True)
    assert appending.refusal(now_hour) is None


def test_following_a_log_imports_its_new_lines(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    """A followed log is the site's live source: its lines are recent by nature."""
    server, tokens = collector
    site = tokens["follow"]
    now = int(time.time())
    hits = tuple(
        Hit(-120 + n, "203.0.113.7", FIREFOX, "GET", "/about", 200, "text/html") for n in range(3)
    )
    log = tmp_path / "access.log"
    log.write_text(render("combined", now, hits), encoding="utf-8")
    done = run_import(server.url, site.write, "--follow", "--idle-exit", "1", str(log))
    assert done.returncode == 0, done.stderr
    assert "live counts may still arrive" not in done.stderr
    assert stats(server.url, site, "requests")[""] == len(hits)
