"""A scripted day of traffic with known outcomes, rendered in every log format, and the
helpers that import it through the real ``headcount`` command into a real collector."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx

from headcount_collector.config import token_digest

BIN = Path(sys.executable).parent
HOST = "www.example.org"
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GPTBOT = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"
# A zone east of UTC: the importer must take the offset from the line.
ZONE = timezone(timedelta(hours=2))


@dataclass(frozen=True)
class Hit:
    offset: int  # seconds after the scenario's first hour
    addr: str
    ua: str
    method: str
    target: str
    status: int
    content_type: str
    referer: str | None = None
    elapsed: float = 0.012
    # What the SDK's rules make of it: a pageview (route without a router, referrer),
    # or None; and the bot category, if any.
    pageview: tuple[str, str] | None = None
    bot: str | None = None


SCENARIO = (
    Hit(60, "203.0.113.7", CHROME, "GET", "/?utm_source=newsletter&utm_medium=email", 200,
        "text/html; charset=utf-8", "https://news.example.net/item?id=7",
        pageview=("/", "example.net")),
    Hit(120, "203.0.113.7", CHROME, "GET", "/blog/hello-world", 200, "text/html",
        f"https://{HOST}/", elapsed=0.180, pageview=("/blog/hello-world", "(internal)")),
    Hit(125, "203.0.113.7", CHROME, "GET", "/static/site.css", 200, "text/css",
        f"https://{HOST}/blog/hello-world", elapsed=0.002),
    Hit(300, "198.51.100.23", FIREFOX, "GET", "/users/12345", 200, "text/html",
        pageview=("/users/{id}", "(direct)")),
    Hit(400, "66.249.66.1", GOOGLEBOT, "GET", "/", 200, "text/html", bot="search"),
    Hit(500, "20.171.207.2", GPTBOT, "GET", "/blog/hello-world", 200, "text/html", bot="ai"),
    Hit(600, "192.0.2.99", FIREFOX, "GET", "/wp-login.php", 404, "text/html"),
    Hit(700, "192.0.2.99", FIREFOX, "POST", "/contact", 303, "text/html", elapsed=0.600),
    Hit(3600 + 900, "198.51.100.23", FIREFOX, "GET", "/", 200, "text/html",
        "https://www.google.com/search?q=x", pageview=("/", "google.com")),
    Hit(3600 + 1000, "192.0.2.50", CHROME, "GET", "/", 500, "text/html", elapsed=2.0),
)  # fmt: skip
# 203.0.113.7 makes one visit of two pages; 198.51.100.23 two visits over an hour apart.
VISITS = 3


def expected_pageviews_by_route() -> Counter[str]:
    return Counter(hit.pageview[0] for hit in SCENARIO if hit.pageview)


def expected_bots() -> Counter[str]:
    return Counter(hit.bot for hit in SCENARIO if hit.bot)


def start_hour() -> int:
    """Two days ago: within what ingest accepts, long before any live data."""
    return (int(time.time()) // 3600 - 48) * 3600


def _moment(base: int, hit: Hit) -> datetime:
    return datetime.fromtimestamp(base + hit.offset, UTC).astimezone(ZONE)


def _local(moment: datetime) -> str:
    return moment.strftime("%d/%b/%Y:%H:%M:%S %z")


def _quoted(value: str | None) -> str:
    return "-" if value is None else value.replace('"', "\\x22")


def render(fmt: str, base: int, hits: tuple[Hit, ...] = SCENARIO) -> str:
    lines = []
    for hit in hits:
        moment = _moment(base, hit)
        request = f"{hit.method} {hit.target} HTTP/1.1"
        if fmt == "combined":
            line = (
                f'{hit.addr} - - [{_local(moment)}] "{request}" {hit.status} 512 '
                f'"{_quoted(hit.referer)}" "{_quoted(hit.ua)}"'
            )
        elif fmt == "common":
            line = f'{hit.addr} - - [{_local(moment)}] "{request}" {hit.status} 512'
        elif fmt == "combined-vhost":
            line = (
                f'{HOST}:443 {hit.addr} - - [{_local(moment)}] "{request}" {hit.status} 512 '
                f'"{_quoted(hit.referer)}" "{_quoted(hit.ua)}"'
            )
        elif fmt == "nginx-json":
            line = json.dumps(
                {
                    "time_iso8601": moment.isoformat(),
                    "remote_addr": hit.addr,
                    "request": request,
                    "status": str(hit.status),
                    "http_referer": hit.referer or "",
                    "http_user_agent": hit.ua,
                    "request_time": f"{hit.elapsed:.3f}",
                    "sent_http_content_type": hit.content_type,
                    "host": HOST,
                }
            )
        elif fmt == "caddy":
            headers: dict[str, list[str]] = {"User-Agent": [hit.ua]}
            if hit.referer:
                headers["Referer"] = [hit.referer]
            line = json.dumps(
                {
                    "level": "info",
                    "ts": base + hit.offset + 0.25,
                    "logger": "http.log.access",
                    "msg": "handled request",
                    "request": {
                        "client_ip": hit.addr,
                        "proto": "HTTP/1.1",
                        "method": hit.method,
                        "host": HOST,
                        "uri": hit.target,
                        "headers": headers,
                    },
                    "duration": hit.elapsed,
                    "size": 512,
                    "status": hit.status,
                    "resp_headers": {"Content-Type": [hit.content_type]},
                }
            )
        elif fmt == CUSTOM_NGINX:
            line = (
                f"{HOST} {hit.addr} [{moment.isoformat()}] "
                f'"{hit.method} {hit.target}" {hit.status} "{_quoted(hit.referer)}" '
                f'"{_quoted(hit.ua)}" "{hit.content_type}" {hit.elapsed:.3f} "-"'
            )
        elif fmt == CUSTOM_APACHE:
            line = (
                f'{hit.addr} [{_local(moment)}] "{request}" {hit.status} '
                f'{round(hit.elapsed * 1e6)} "{_quoted(hit.referer)}" "{_quoted(hit.ua)}"'
            )
        else:
            raise ValueError(fmt)
        lines.append(line)
    return "\n".join(lines) + "\n"


CUSTOM_NGINX = (
    'log:$host $remote_addr [$time_iso8601] "$request_method $request_uri" $status '
    '"$http_referer" "$http_user_agent" "$sent_http_content_type" $request_time '
    '"$http_x_forwarded_for"'
)
CUSTOM_APACHE = 'log:%h %t "%r" %>s %D "%{Referer}i" "%{User-Agent}i"'
FORMATS = ("combined", "combined-vhost", "nginx-json", "caddy", CUSTOM_NGINX, CUSTOM_APACHE)


@dataclass(frozen=True)
class SiteTokens:
    id: str
    write: str
    read: str


def sites_toml(names: list[str], *, noise: bool = False) -> tuple[str, dict[str, SiteTokens]]:
    """One UTC site per name, k = 1 so that every count of a few hits is shown."""
    text = []
    tokens = {}
    for name in names:
        site = SiteTokens(name, f"hcw_import-{name}-write-0001", f"hcr_import-{name}-read-0001")
        tokens[name] = site
        text.append(
            f"""
[[sites]]
id = "{name}"
timezone = "UTC"
write_token_sha256 = "{token_digest(site.write).hex()}"
read_token_sha256 = "{token_digest(site.read).hex()}"
k = 1
{"" if noise else "exact_counts = true"}
"""
        )
    return "".join(text), tokens


def run_import(
    url: str | None, token: str | None, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "headcount"), "import", "--host", HOST]
    if url is not None and token is not None:
        command += ["--endpoint", url, "--write-token", token]
    return subprocess.run(
        [*command, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def stats(url: str, site: SiteTokens, metric: str, by: str | None = None) -> Counter[str]:
    """Totals of ``metric`` since three days ago, per value of ``by`` ("" without)."""
    since = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d")
    params = {"metric": metric, "interval": "total", "from": since}
    if by:
        params["by"] = by
    response = httpx.get(
        f"{url}/v1/stats", params=params, headers={"authorization": f"Bearer {site.read}"}
    )
    response.raise_for_status()
    body = response.json()
    out: Counter[str] = Counter()
    if by:
        for row in body["rows"]:
            out[str(row[by])] += row["count"]
    else:
        for row in body["totals"]:
            out[""] += row["count"]
    return out
