"""A real nginx (installed by .ci/run from the system's package manager) serves a small
static site and writes its own combined access log; browsers and crawlers visit it
from distinct loopback addresses; ``headcount import`` reads that log into a real
collector. The released counts must be exact, and no visitor address or user agent may
be anywhere the collector keeps data or logs."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._servers import (
    CollectorProcess,
    ServerFailed,
    answers_http,
    free_port,
    spawn,
    start_collector,
)
from tests.logimport._scenario import (
    CHROME,
    FIREFOX,
    GOOGLEBOT,
    GPTBOT,
    SiteTokens,
    run_import,
    sites_toml,
    stats,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

HOST = "www.example.org"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONFIG = """
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log combined;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    types {{ text/html html; text/css css; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root}/site;
        index index.html;
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (.ci/run installs it with apt-get)")
    root = tmp_path / "nginx"
    (root / "tmp").mkdir(parents=True)
    site = root / "site"
    (site / "about").mkdir(parents=True)
    (site / "blog").mkdir()
    (site / "index.html").write_text("<h1>home</h1>", encoding="utf-8")
    (site / "about" / "index.html").write_text("<h1>about</h1>", encoding="utf-8")
    (site / "blog" / "first-post.html").write_text("<h1>post</h1>", encoding="utf-8")
    (site / "style.css").write_text("h1 {}", encoding="utf-8")
    port = free_port()
    # Run as root (CI containers), nginx's workers would drop to a user that cannot
    # read a private temporary directory; as anyone else the directive is not needed.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = root / "nginx.conf"
    config.write_text(CONFIG.format(user=user, root=root, port=port), encoding="utf-8")
    server = spawn(
        "nginx",
        [NGINX, "-c", str(config), "-p", str(root), "-e", str(root / "error.log")],
        root / "nginx.out",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            server.wait_until(answers_http(url + "/style.css"), timeout=15)
        except ServerFailed as failed:
            pytest.fail(f"{failed}\nerror.log:\n{(root / 'error.log').read_text()}")
        # The readiness probe is not traffic. nginx logs a request after answering it,
        # so wait for the probe's line before emptying the log.
        log = root / "access.log"
        deadline = time.monotonic() + 10
        while b"/style.css" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        log.write_bytes(b"")
        yield url, root / "access.log"
    finally:
        server.stop()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[CollectorProcess, dict[str, SiteTokens]]]:
    text, tokens = sites_toml(["nginx"])
    site_file = tmp_path / "sites.toml"
    site_file.write_text(text, encoding="utf-8")
    server = start_collector(tmp_path, site_file)
    try:
        yield server, tokens
    finally:
        server.stop()


def _visit(url: str, address: str, path: str, agent: str, referer: str | None = None) -> int:
    headers = {"user-agent": agent, "host": HOST}
    if referer is not None:
        headers["referer"] = referer
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport) as client:
        return client.get(url + path, headers=headers).status_code


def test_nginx_access_log_imports_exactly(
    nginx: tuple[str, Path],
    collector: tuple[CollectorProcess, dict[str, SiteTokens]],
    tmp_path: Path,
) -> None:
    url, access_log = nginx
    server, tokens = collector
    site = tokens["nginx"]
    reader = f"https://{HOST}"
    visits = [
        ("127.23.45.1", "/?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale", CHROME, "https://mail.example.net/"),
        ("127.23.45.1", "/about/", CHROME, f"{reader}/"),
        ("127.23.45.1", "/style.css", CHROME, f"{reader}/about/"),
        ("127.23.45.2", "/blog/first-post.html", FIREFOX, "https://www.reddit.com/r/python/"),
        ("127.23.45.2", "/", FIREFOX, f"{reader}/blog/first-post.html"),
        ("127.23.45.3", "/missing-page", FIREFOX, None),
        ("127.23.45.4", "/", GOOGLEBOT, None),
        ("127.23.45.4", "/about/", GOOGLEBOT, None),
        ("127.23.45.5", "/blog/first-post.html", GPTBOT, None),
    ]  # fmt: skip
    statuses = [_visit(url, *visit) for visit in visits]
    assert statuses == [200, 200, 200, 200, 200, 404, 200, 200, 200]
    deadline = time.monotonic() + 10
    while access_log.read_text().count("\n") < len(visits) and time.monotonic() < deadline:
        time.sleep(0.05)

    # A static site has no middleware to count it live: its logs are its only source,
    # imported as they are written (--append), this very hour included.
    done = run_import(server.url, site.write, "--append", str(access_log))
    assert done.returncode == 0, done.stderr

    assert stats(server.url, site, "pageviews", "route") == Counter(
        {"/": 2, "/about": 1, "/blog/first-post.html": 1}
    )
    assert stats(server.url, site, "pageviews", "referrer") == Counter(
        {"example.net": 1, "(internal)": 2, "reddit.com": 1}
    )
    assert stats(server.url, site, "pageviews", "utm_campaign") == Counter(
        {"spring-sale": 1, "(none)": 3}
    )
    assert stats(server.url, site, "bots", "category") == Counter({"search": 2, "ai": 1})
    assert stats(server.url, site, "requests")[""] == len(visits)
    assert stats(server.url, site, "requests", "route")["(unmatched)"] == 1
    assert stats(server.url, site, "visits")[""] == 2

    # Nothing that identifies a visitor is at rest: not in the database files (WAL
    # included), not in the collector's log, not in what the importer printed.
    server.stop()
    secrets = [b"127.23.45.", b"Gecko/20100101", b"Chrome/124", b"Googlebot", b"GPTBot"]
    places = [*tmp_path.glob("headcount.sqlite3*"), server.log_path]
    assert places
    for place in places:
        data = place.read_bytes()
        for secret in secrets:
            assert secret not in data, (place.name, secret)
    for secret in secrets:
        assert secret.decode() not in done.stdout + done.stderr
