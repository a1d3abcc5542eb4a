"""The CLI as an operator runs it: real processes, real files, real log lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from headcount_collector.config import token_digest
from tests._servers import (
    CollectorProcess,
    ServerProcess,
    answers_http,
    free_port,
    spawn,
    start_collector,
)
from tests.collector.conftest import auth, batch_body, current_hour, pageview
from tests.conftest import site_file_text

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str, cwd: Path | None = None, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headcount_collector", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def serve_in(cwd: Path, *args: str) -> tuple[ServerProcess, str]:
    """``serve`` started from ``cwd`` as a user would, waiting until it answers."""
    port = free_port()
    server = spawn(
        "serve",
        [sys.executable, "-m", "headcount_collector", "serve", "--port", str(port), *args],
        cwd / "serve.log",
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "HEADCOUNT_CONFIG"},
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_until(answers_http(f"{url}/healthz"))
    return server, url


@pytest.fixture
def stopped() -> Iterator[list[CollectorProcess]]:
    servers: list[CollectorProcess] = []
    yield servers
    for server in servers:
        server.stop()


# --- logging: one worker and N workers alike (silent failure 1) --------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_logs_access_lines_and_retention_runs(
    tmp_path: Path, site_file: Path, workers: int, stopped: list[CollectorProcess]
) -> None:
    server = start_collector(
        tmp_path,
        site_file,
        workers=workers,
        extra=("--access-log", "--retention-interval", "0.3"),
    )
    stopped.append(server)
    requests = 12
    for _ in range(requests):
        # A new connection each time, so that with 2 workers both get some.
        httpx.get(f"{server.url}/healthz", headers={"Connection": "close"})
    time.sleep(1.5)
    server.stop()
    log = server.log_text()
    access = re.findall(r"\[(\d+)\] headcount_collector\.access: GET /healthz 200 ", log)
    # Every request start_collector made while waiting, plus ours, and nothing lost.
    assert len(access) >= requests
    retention_pids = set(
        re.findall(r"\[(\d+)\] headcount_collector: retention run: 2 of 2 sites", log)
    )
    # Each worker runs retention and says so, in the same format as a single worker.
    assert len(retention_pids) == workers
    assert f"storing counts in SQLite database {server.db_path} (new file, created now)" in log


# --- where the data lives (silent failure 2) ----------------------------------------------


def test_a_relative_sqlite_url_is_resolved_printed_and_serve_finds_headcount_toml(
    tmp_path: Path,
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "headcount.toml").write_text(site_file_text(), encoding="utf-8")
    # No --config: serve finds ./headcount.toml, as `init` writes it by default.
    server, url = serve_in(app_dir, "--db", "sqlite:///data.sqlite3")
    try:
        response = httpx.post(
            f"{url}/v1/ingest", content=batch_body([pageview(n=3)]), headers=auth()
        )
        assert response.status_code == 202
    finally:
        server.stop()
    text = server.log_text()
    assert f"sites from {app_dir / 'headcount.toml'}: blog, shop" in text
    assert f"SQLite database {app_dir / 'data.sqlite3'} (new file, created now)" in text
    assert (app_dir / "data.sqlite3").exists()
    from headcount_collector.stores.migrations import latest_version

    # Said once, by the process that created it (not by each worker after it).
    assert text.count(f"database schema created (version {latest_version()})") == 1

    # Started from another directory, the same URL names another file: purge and export
    # refuse it (naming the absolute path) rather than create an empty database.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = str(app_dir / "headcount.toml")
    for command in (["purge"], ["export", "blog"]):
        done = cli(*command, "--config", config, "--db", "sqlite:///data.sqlite3", cwd=elsewhere)
        assert done.returncode == 2, done.stdout
        assert f"no database at {elsewhere / 'data.sqlite3'}" in done.stderr
        assert not list(elsewhere.iterdir())
    again = cli("purge", "--config", config, "--db", "sqlite:///data.sqlite3", cwd=app_dir)
    assert again.returncode == 0, again.stderr
    assert f"SQLite database {app_dir / 'data.sqlite3'} (existing file)" in again.stdout


def test_serve_without_a_site_file_says_how_to_make_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HEADCOUNT_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "headcount_collector", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode != 0
    assert "headcount-collector init" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing created


@pytest.mark.postgres
def test_a_postgres_database_is_named_without_its_password(
    tmp_path: Path, site_file: Path, postgres_database: str, stopped: list[CollectorProcess]
) -> None:
    # The test server trusts every local connection, so any password is accepted.
    with_password = postgres_database.replace("postgres@", "postgres:hunter2@", 1)
    assert "hunter2" in with_password
    server = start_collector(tmp_path, site_file, db_url=with_password)
    stopped.append(server)
    server.stop()
    log = server.log_text()
    name = postgres_database.rsplit("/", 1)[1]
    assert f"storing counts in PostgreSQL database '{name}' on 127.0.0.1:5432 as postgres" in log
    assert "hunter2" not in log


@pytest.mark.postgres
def test_a_postgres_database_that_cannot_be_reached_is_named_with_the_reason(
    tmp_path: Path, site_file: Path, postgres_database: str
) -> None:
    missing = postgres_database.rsplit("/", 1)[0].replace("postgres@", "postgres:hunter2@", 1)
    missing += "/headcount_no_such_database"
    done = cli("serve", "--config", str(site_file), "--db", missing, "--port", str(free_port()))
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert "the database is unavailable" in last
    assert 'database "headcount_no_such_database" does not exist' in last
    assert "hunter2" not in done.stderr


def test_a_postgres_url_without_the_driver_gives_an_install_hint(
    tmp_path: Path, site_file: Path
) -> None:
    # A psycopg that cannot be imported, as in an install without the [postgres] extra.
    fake = tmp_path / "no-driver" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    done = cli(
        "purge",
        "--config",
        str(site_file),
        "--db",
        "postgresql://postgres@127.0.0.1:5432/test",
        env={"PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"},
    )
    assert done.returncode == 2
    assert "pip install 'headcount[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr


# --- init, config errors, help -------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--site", "My Blog", "is not a site id"),
        ("--site=-blog", None, "is not a site id"),
        ("--timezone", "Mars/Olympus", "is not an IANA time zone"),
    ],
)
def test_init_validates_before_writing_or_showing_tokens(
    tmp_path: Path, option: str, value: str, problem: str
) -> None:
    done = cli("init", option, *([value] if value is not None else []), cwd=tmp_path)
    assert done.returncode == 2
    assert problem in done.stderr
    assert "token" not in done.stdout
    assert not (tmp_path / "headcount.toml").exists()


def test_init_then_serve_work_together_without_options(tmp_path: Path) -> None:
    done = cli("init", "--site", "my-blog", "--timezone", "Europe/Berlin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "headcount-collector serve" in done.stdout
    checked = cli("check-config", cwd=tmp_path, env={"HEADCOUNT_CONFIG": ""})
    assert checked.returncode == 0, checked.stderr
    assert "my-blog: sealed noise (epsilon 7, delta 1e-06), timezone Europe/Berlin" in (
        checked.stdout
    )
    # A site that opts out of noise says so first, in capitals.
    config = tmp_path / "headcount.toml"
    config.write_text(
        config.read_text().replace("[[sites]]\n", "[[sites]]\nexact_counts = true\n", 1)
    )
    exact = cli("check-config", cwd=tmp_path, env={"HEADCOUNT_CONFIG": ""})
    assert "my-blog: EXACT COUNTS (exact_counts = true" in exact.stdout


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        pytest.param(
            lambda text: "[sites]\n" + text.split("[[sites]]")[1].split("[[sites.events]]")[0],
            "sites: [sites] declares one table; each site needs its own [[sites]] header",
            id="single-brackets",
        ),
        pytest.param(
            lambda text: text.replace(
                token_digest("hcw_test-write-token-blog-0001").hex(),
                "hcw_test-write-token-blog-0001",
            ),
            "sites[0].write_token_sha256: this looks like a raw token",
            id="raw-token",
        ),
        pytest.param(
            lambda text: text.replace("write_token_sha256", "write_token", 1),
            "sites[0].write_token: the file holds only digests",
            id="token-key",
        ),
    ],
)
def test_config_errors_hint_at_the_usual_mistakes(
    tmp_path: Path, mistake: object, expected: str
) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(mistake(site_file_text()), encoding="utf-8")  # type: ignore[operator]
    done = cli("check-config", "--config", str(path))
    assert done.returncode == 2
    assert f"{path}: {expected}" in done.stderr
    assert "hcw_test-write-token-blog-0001" not in done.stderr  # never echo a token


def test_several_sites_under_single_brackets_get_the_hint_too(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    text = site_file_text()
    path.write_text(text.replace("[[sites]]", "[sites]"), encoding="utf-8")
    assert text.count("[[sites]]") >= 2  # TOML itself refuses the second [sites]
    done = cli("check-config", "--config", str(path))
    assert done.returncode == 2
    assert f"{path}: not valid TOML: " in done.stderr  # no key to name: none shown
    assert "each site needs its own [[sites]] header" in done.stderr


def test_digest_reads_the_token_from_stdin(tmp_path: Path) -> None:
    done = cli("digest", stdin="hcw_some-token\n")
    assert done.returncode == 0
    assert done.stdout.strip() == token_digest("hcw_some-token").hex()
    assert cli("digest", stdin="").returncode == 2


def test_the_digest_example_in_its_help_digests_the_token(tmp_path: Path) -> None:
    """What ``digest --help`` shows is run as a newcomer would paste it."""
    shown = cli("digest", "--help").stdout
    example = re.search(r"Example: (.+\| headcount-collector digest)", " ".join(shown.split()))
    assert example is not None, shown
    command = example.group(1).replace(
        "headcount-collector", f"{sys.executable} -m headcount_collector"
    )
    done = subprocess.run(
        ["sh", "-c", command],
        env={**os.environ, "TOKEN": "hcw_pasted-token"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == token_digest("hcw_pasted-token").hex()
    assert done.stderr == ""
    # A format string or placeholder piped in by mistake is refused, not digested.
    for slip in ("%s", "$TOKEN"):
        refused = cli("digest", stdin=slip)
        assert refused.returncode == 2
        assert refused.stdout == ""
    odd = cli("digest", stdin="my-own-token\n")
    assert odd.returncode == 0
    assert "does not start with hcw_ or hcr_" in odd.stderr


def test_serve_on_a_taken_port_says_which_and_how_to_choose_another(
    tmp_path: Path, site_file: Path
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(
            "serve", "--config", str(site_file), "--db", f"sqlite:///{tmp_path / 'h.sqlite3'}",
            "--port", str(port),
        )  # fmt: skip
    assert done.returncode == 2
    assert f"port {port} is already in use on 127.0.0.1" in done.stderr
    assert "--port" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "h.sqlite3").exists()  # stopped before touching the database


def test_version_and_help_show_defaults_without_markup() -> None:
    from headcount_collector import __version__

    assert cli("--version").stdout.strip() == f"headcount-collector {__version__}"
    top = cli("--help").stdout
    assert "``" not in top
    for command in (
        ("serve",),
        ("init",),
        ("purge",),
        ("check-config",),
        ("digest",),
        ("demo",),
        ("sites", "add"),
        ("sites", "remove"),
        ("token", "rotate"),
        ("export",),
        ("backup",),
    ):
        assert command[0] in top
        text = cli(*command, "--help").stdout
        assert "usage:" in text
        assert "``" not in text
        assert "default: None" not in text
    serve = " ".join(cli("serve", "--help").stdout.split())
    for default in ("(default: 8787)", "(default: 127.0.0.1)", "(default: 1)", "(default: info)"):
        assert default in serve


# --- purge prints what it removed ------------------------------------------------------------


def test_purge_prints_what_it_removed(tmp_path: Path, stopped: list[CollectorProcess]) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(site_file_text(), encoding="utf-8")
    server = start_collector(tmp_path, path)
    stopped.append(server)
    three_days_ago = current_hour() - 3 * 86400
    body = batch_body(
        [pageview(route="/old", n=2, hour=three_days_ago), pageview(route="/new", n=1)]
    )
    assert httpx.post(f"{server.url}/v1/ingest", content=body, headers=auth()).status_code == 202
    server.stop()
    # The operator shortens retention; purge applies it now and says what it did.
    path.write_text(site_file_text(hourly_days=1, keep_days=2), encoding="utf-8")
    done = cli("purge", "--config", str(path), "--db", server.db_url)
    assert done.returncode == 0, done.stderr
    assert f"purging SQLite database {server.db_path} (existing file)" in done.stdout
    blog = next(line for line in done.stdout.splitlines() if line.strip().startswith("blog:"))
    rolled, deleted = map(int, re.findall(r"(\d+) ", blog)[:2])
    assert rolled >= 1  # the old hour became a day, which is past keep_days ...
    assert deleted >= 1  # ... and so was deleted
    assert "shop: 0 hourly rows rolled up into days, 0 daily rows deleted" in done.stdout


# --- managing sites and tokens -----------------------------------------------------------------

COMMENTED = "# Our sites. Ask ops before changing k.\n" + site_file_text().replace(
    "k = 5", "k = 5  # agreed with the DPO"
)


def tokens_in(stdout: str) -> dict[str, str]:
    found = dict(re.findall(r"(write|read) token \(\w+\):\s+(\S+)", stdout))
    assert found, stdout
    return found


def test_sites_add_list_remove_keep_comments_and_validate(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(COMMENTED, encoding="utf-8")
    added = cli("sites", "add", "docs", "--timezone", "Asia/Tokyo", "--config", str(path))
    assert added.returncode == 0, added.stderr
    tokens = tokens_in(added.stdout)
    text = path.read_text()
    assert "# Our sites. Ask ops before changing k." in text
    assert "k = 5  # agreed with the DPO" in text
    assert tokens["write"] not in text  # only digests are stored
    assert token_digest(tokens["write"]).hex() in text
    listed = cli("sites", "list", "--config", str(path)).stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["blog", "shop", "docs"]
    assert "timezone=Asia/Tokyo" in listed[2]
    assert "release=noise" in listed[2]
    # A test site that releases exact counts, asked for by name.
    trial = cli("sites", "add", "trial", "--exact-counts", "--config", str(path))
    assert trial.returncode == 0, trial.stderr
    assert "trial\trelease=EXACT" in cli("sites", "list", "--config", str(path)).stdout
    assert cli("sites", "remove", "trial", "--config", str(path)).returncode == 0

    # Bad input changes nothing.
    before = path.read_text()
    for bad in (
        ["sites", "add", "Docs Site"],
        ["sites", "add", "blog"],
        ["sites", "add", "x", "--timezone", "Mars/Olympus"],
        ["sites", "add", "y", "--k", "0"],
        ["sites", "remove", "nope"],
    ):
        done = cli(*bad, "--config", str(path))
        assert done.returncode != 0, bad
        assert "token" not in done.stdout, bad
        assert path.read_text() == before, bad

    removed = cli("sites", "remove", "shop", "--config", str(path))
    assert removed.returncode == 0, removed.stderr
    assert "stored counts stay" in removed.stdout
    assert [
        line.split("\t")[0]
        for line in cli("sites", "list", "--config", str(path)).stdout.splitlines()
    ] == ["blog", "docs"]
    assert "k = 5  # agreed with the DPO" in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600) or path.stat().st_mode & 0o077 == 0


def post_status(url: str, body: bytes, headers: dict[str, str]) -> int | None:
    """The status of one ingest on a new connection, or None if a worker being replaced
    reset it."""
    try:
        return httpx.post(f"{url}/v1/ingest", content=body, headers=headers).status_code
    except httpx.TransportError:
        return None


@pytest.mark.parametrize("workers", [1, 2])
def test_token_rotate_and_sighup_switch_tokens_without_dropping_requests(
    tmp_path: Path, site_file: Path, workers: int, stopped: list[CollectorProcess]
) -> None:
    import signal
    import threading

    from tests.conftest import SHOP_WRITE_TOKEN, WRITE_TOKEN

    server = start_collector(tmp_path, site_file, workers=workers)
    stopped.append(server)
    rotated = cli("token", "rotate", "blog", "--kind", "write", "--config", str(site_file))
    assert rotated.returncode == 0, rotated.stderr
    new_token = tokens_in(rotated.stdout)["write"]
    assert "read" not in tokens_in(rotated.stdout)

    # Another site keeps sending throughout the reload: every batch must be accepted.
    # It sends as the SDK does, over one kept-alive connection, retrying a batch after a
    # connection error: a retiring worker closes its idle connections, and a request
    # crossing that close on the wire is reset (HTTP keep-alive's race, which no server
    # avoids). The batch id makes the retry safe; a refusal would be a dropped request.
    answers: list[int] = []
    stop = threading.Event()

    def keep_sending() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                body = batch_body([pageview(route="/steady")])
                for _attempt in range(5):
                    try:
                        status = client.post(
                            "/v1/ingest", content=body, headers=auth(SHOP_WRITE_TOKEN)
                        ).status_code
                    except httpx.TransportError:
                        continue
                    answers.append(status)
                    break
                else:
                    answers.append(0)  # never answered: dropped

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.3)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = batch_body([pageview(route="/new")])
            if post_status(server.url, body, auth(new_token)) == 202:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the new token was never accepted:\n" + server.log_text())
        # Soon every worker has the new sites (several workers are replaced one by one,
        # each new one in service before the old retires): the old token is refused by all.
        refused_in_a_row = 0
        while refused_in_a_row < 8 and time.monotonic() < deadline:
            old = post_status(
                server.url,
                batch_body([pageview()]),
                {**auth(WRITE_TOKEN), "Connection": "close"},
            )
            refused_in_a_row = refused_in_a_row + 1 if old == 401 else 0
        assert refused_in_a_row == 8
        time.sleep(0.3)
    finally:
        stop.set()
        sender.join()
    assert answers
    # 200 is the answer to a retried batch the collector had already applied.
    assert set(answers) <= {200, 202}, answers
    assert server.process.poll() is None  # still serving


def test_a_broken_site_file_on_sighup_keeps_the_sites_in_use(
    tmp_path: Path, site_file: Path, stopped: list[CollectorProcess]
) -> None:
    import signal

    from tests.conftest import WRITE_TOKEN

    server = start_collector(tmp_path, site_file)
    stopped.append(server)
    site_file.write_text("[sites]\nid = 'x'\n", encoding="utf-8")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "SIGHUP" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "keeping the sites in use" in server.log_text()
    body = batch_body([pageview()])
    assert (
        httpx.post(f"{server.url}/v1/ingest", content=body, headers=auth(WRITE_TOKEN)).status_code
        == 202
    )


def test_a_broken_site_file_on_sighup_with_several_workers_says_so_in_one_line(
    tmp_path: Path, site_file: Path, stopped: list[CollectorProcess]
) -> None:
    import signal

    from tests.conftest import WRITE_TOKEN

    server = start_collector(tmp_path, site_file, workers=2)
    stopped.append(server)
    site_file.write_text(site_file.read_text() + "bogus_key = 1\n", encoding="utf-8")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "a new worker did not start" not in server.log_text():
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.1)
    log = server.log_text()
    assert "bogus_key" in log  # the problem itself is named
    assert "Traceback" not in log
    body = batch_body([pageview()])
    assert (
        httpx.post(f"{server.url}/v1/ingest", content=body, headers=auth(WRITE_TOKEN)).status_code
        == 202
    )


# --- export and backup -------------------------------------------------------------------------


def test_export_writes_what_the_api_releases_and_backup_copies_online(
    tmp_path: Path, site_file: Path, stopped: list[CollectorProcess]
) -> None:
    from tests.collector.conftest import read_auth
    from tests.conftest import READ_TOKEN

    server = start_collector(tmp_path, site_file)
    stopped.append(server)
    records = [
        pageview(route="/", n=40),
        pageview(route="/about", n=9),
        pageview(route="/rare", n=2),
    ]
    assert (
        httpx.post(
            f"{server.url}/v1/ingest", content=batch_body(records), headers=auth()
        ).status_code
        == 202
    )
    base = ("--config", str(site_file), "--db", server.db_url)
    # Both ask for the same days: their defaults ("7 days ago", "now") are read at two
    # moments, which around the site's midnight are two different days.
    today = datetime.now(UTC).date()
    start, end = str(today - timedelta(days=7)), str(today + timedelta(days=2))
    for fmt in ("csv", "json"):
        exported = cli(
            "export", "blog", "--by", "route", "--interval", "total", "--format", fmt,
            "--from", start, "--to", end, *base,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        api = httpx.get(
            f"{server.url}/v1/stats",
            params={"by": "route", "interval": "total", "format": fmt, "from": start, "to": end},
            headers=read_auth(READ_TOKEN),
        )
        if fmt == "csv":
            assert exported.stdout == api.text
            csv_before_backup = exported.stdout
        else:
            import json

            assert json.loads(exported.stdout) == api.json()
    assert "/rare" not in exported.stdout  # below k = 5: withheld, as by the API

    # Online: the collector keeps running and accepting while the copy is taken.
    copy = tmp_path / "backup" / "copy.sqlite3"
    copy.parent.mkdir()
    done = cli("backup", str(copy), "--db", server.db_url)
    assert done.returncode == 0, done.stderr
    assert "integrity ok" in done.stdout
    assert (
        httpx.post(
            f"{server.url}/v1/ingest", content=batch_body([pageview()]), headers=auth()
        ).status_code
        == 202
    )
    from_copy = cli(
        "export",
        "blog",
        "--by",
        "route",
        "--interval",
        "total",
        "--config",
        str(site_file),
        "--db",
        f"sqlite:///{copy}",
    )
    # The copy holds exactly what was stored when it was taken.
    assert from_copy.returncode == 0, from_copy.stderr
    assert from_copy.stdout == csv_before_backup
    assert cli("backup", str(copy), "--db", server.db_url).returncode == 1  # exists


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "nosuchsite"], "no site with id 'nosuchsite'"),
        (["export", "blog", "--metric", "sessions"], "--metric"),
        (["export", "blog", "--by", "user_id"], "--by"),
        (["backup", "x.sqlite3", "--db", "postgresql://postgres@127.0.0.1/test"], "pg_dump"),
        (["backup", "x.sqlite3", "--db", "sqlite:///missing.sqlite3"], "no database at"),
    ],
)
def test_export_and_backup_refuse_bad_input_clearly(
    tmp_path: Path, site_file: Path, args: list[str], message: str
) -> None:
    if args[0] == "export":
        from headcount_collector.stores import open_store

        store = open_store(f"sqlite:///{tmp_path / 'h.sqlite3'}")
        store.migrate()
        store.close()
        args = [*args, "--config", str(site_file), "--db", "sqlite:///h.sqlite3"]
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.sqlite3").exists()
