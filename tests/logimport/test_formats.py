"""Parsing single lines: fields, time zones, escapes, and clear refusals."""

from __future__ import annotations

import calendar
import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from headcount.logimport import Importer, ImportSummary, LineSource, parser_for
from headcount.logimport._formats import Parser
from headcount.logimport._line import parse_seconds
from headcount.logimport._routes import load_resolver
from headcount.logimport._text_formats import NAMED_TEXT_FORMATS, TextFormat, text_field

NOON_UTC = calendar.timegm((2026, 11, 30, 12, 0, 0, 0, 0, 0))


@pytest.mark.parametrize(
    "stamp",
    ["30/Nov/2026:14:00:00 +0200", "30/Nov/2026:07:00:00 -0500", "30/Nov/2026:12:00:00 +0000"],
)
def test_time_zone_comes_from_the_line(stamp: str) -> None:
    parse = parser_for("combined")
    line = parse(f'192.0.2.1 - - [{stamp}] "GET / HTTP/1.1" 200 5 "-" "agent"')
    assert line.time == NOON_UTC


def test_combined_fields_and_escapes() -> None:
    line = parser_for("combined")(
        '192.0.2.1 - alice [30/Nov/2026:12:00:00 +0000] "GET /a?b=1 HTTP/2.0" 304 0 '
        '"https://example.net/\\x22q\\x22" "Agent \\"quoted\\""'
    )
    assert (line.client_addr, line.method, line.target, line.status) == (
        "192.0.2.1",
        "GET",
        "/a?b=1",
        304,
    )
    assert line.referer == 'https://example.net/"q"'
    assert line.user_agent == 'Agent "quoted"'
    assert line.elapsed is None
    assert line.content_type is None


def test_vhost_host_and_apache_microseconds() -> None:
    vhost = parser_for("combined-vhost")(
        'shop.example.org:443 192.0.2.1 - - [30/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" '
        '200 5 "-" "agent"'
    )
    assert vhost.host == "shop.example.org"
    apache = parser_for('log:%h %t "%r" %>s %D')(
        '192.0.2.1 [30/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 250000'
    )
    assert apache.elapsed == pytest.approx(0.25)


def test_nginx_json_and_caddy() -> None:
    nginx = parser_for("nginx-json")(
        '{"time_iso8601":"2026-11-30T13:00:00+01:00","remote_addr":"192.0.2.1",'
        '"request_method":"GET","request_uri":"/x","status":"200","request_time":"0.042",'
        '"http_x_forwarded_for":"198.51.100.1"}'
    )
    assert (nginx.time, nginx.target, nginx.elapsed) == (NOON_UTC, "/x", 0.042)
    assert nginx.forwarded_for == "198.51.100.1"
    caddy = parser_for("caddy")(
        f'{{"ts":{NOON_UTC}.5,'
        '"request":{"client_ip":"192.0.2.1","method":"GET","host":"a.example",'
        '"uri":"/y","headers":{"User-Agent":["agent"]}},"duration":0.5,"status":201,'
        '"resp_headers":{"Content-Type":["text/html"]}}'
    )
    assert (caddy.time, caddy.status, caddy.user_agent) == (NOON_UTC + 0.5, 201, "agent")
    assert (caddy.host, caddy.content_type, caddy.elapsed) == ("a.example", "text/html", 0.5)


@pytest.mark.parametrize(
    ("fmt", "line", "reason"),
    [
        ("combined", "not a log line", "does not match"),
        ("combined", '1.2.3.4 - - [30/Foo/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "a"', "month"),
        ("combined", '1.2.3.4 - - [30/Nov/2026:12:00:00] "GET / HTTP/1.1" 200 1 "-" "a"', "form"),
        ("combined", '1.2.3.4 - - [30/Nov/2026:12:00:00 +0000] "GARBAGE" 200 1 "-" "a"', "request line"),
        ("combined", '1.2.3.4 - - [30/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" 2000 1 "-" "a"', "three-digit"),
        ("nginx-json", "[1, 2]", "JSON object"),
        ("nginx-json", '{"request": "GET / HTTP/1.1", "status": 200}', "time"),
        ("nginx-json", '{"request": "GET / HTTP/1.1", "msec": "1", "status": "x"}', "status"),
        ("caddy", '{"level": "info", "msg": "server running"}', "access-log entry"),
        ("caddy", '{"ts": 1, "request": {"method": "GET", "uri": "/"}, "status": 0}', "three-digit"),
    ],
)  # fmt: skip
def test_lines_that_do_not_fit_say_why(fmt: str, line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parser_for(fmt)(line)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ('log:$remote_addr "$request" $status', "no time"),
        ("log:$remote_addr [$time_local] $request", "no status"),
        ("log:[$time_local] $status", "no request"),
        ("apache", "unknown format"),
    ],
)
def test_format_strings_without_what_is_needed_are_refused(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parser_for(spec)


def test_a_misaligned_format_never_quotes_the_line() -> None:
    # The request time sits where this log has its user agent: the error says what is
    # wrong without repeating the value, which may be an address or a user agent.
    parse = parser_for('log:$remote_addr [$time_local] "$request" $status "$request_time"')
    with pytest.raises(ValueError, match="request time is not a number") as error:
        parse('192.0.2.1 [30/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 "Mozilla/5.0 X"')
    assert "Mozilla" not in str(error.value)
    for fmt, line in [
        ("nginx-json", '{"request": "GET / HTTP/1.1", "status": 200, "msec": "192.0.2.1"}'),
        ("nginx-json", '{"request": "GET / HTTP/1.1", "status": 200, "time_iso8601": "Mozilla"}'),
    ]:
        with pytest.raises(ValueError, match="time") as error:
            parser_for(fmt)(line)
        assert "192.0.2.1" not in str(error.value)
        assert "Mozilla" not in str(error.value)


def test_gzip_and_plain_give_the_same_fingerprint(tmp_path: Path) -> None:
    text = b"line one\nline two\n"
    plain = tmp_path / "a.log"
    plain.write_bytes(text)
    packed = tmp_path / "b.log.gz"
    packed.write_bytes(gzip.compress(text))
    fingerprints = []
    for path in (plain, packed):
        source = LineSource([str(path)])
        assert [line for _, _, line in source.lines()] == [b"line one\n", b"line two\n"]
        fingerprints.append(source.fingerprint)
    assert fingerprints[0] == fingerprints[1]
    other = LineSource([str(plain)])
    plain.write_bytes(text + b"three\n")
    list(other.lines())
    assert other.fingerprint != fingerprints[0]


def test_routes_file_before_generalized_paths(tmp_path: Path) -> None:
    routes = tmp_path / "routes.txt"
    routes.write_text("# templates\n/docs/{page}\n/docs/index\n", encoding="utf-8")
    resolve = load_resolver(None, None, str(routes))
    assert resolve("GET", "/docs/index", None) == ("/docs/index", False)
    assert resolve("GET", "/docs/install", None) == ("/docs/{page}", False)
    assert resolve("GET", "/orders/123456", None) == ("/orders/{id}", False)
    routes.write_text("docs/{page}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="starts with '/'"):
        load_resolver(None, None, str(routes))


_TRICKY: list[Callable[[str], str]] = [
    lambda line: line.replace(" 5 ", "\t5 "),  # a tab between fields: bad
    lambda line: line.replace("Linux", "\tLinux").replace("compatible", "\tcompatible"),
    lambda line: line.replace(" - - ", " -  "),  # an empty $remote_user / %u
    lambda line: line.replace(" 5 ", "  5 "),  # an empty field where a status is: bad
    lambda line: line.replace('"GET', '"G"ET'),  # a quote too many: bad
    lambda line: line + " and more",  # what follows the format is not read
    lambda line: line + " ",
    lambda line: line.replace("+0100]", "+0100]]"),  # bad
    lambda line: line.replace(" [", " [["),  # the time is read without the second "["
    lambda line: line.replace(" +0100", "  +0100"),  # bad
    lambda line: line.replace(" 5 ", "\u00a05 "),  # a no-break space: bad
    lambda line: line.replace("HTTP/1.1", "HTTP/1.1\u3000\x1c\\"),
]


@pytest.mark.parametrize(
    "spec",
    [
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" $request_time $host',
        '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D',
    ],
)
def test_a_text_log_counts_as_its_lines_parse(spec: str, tmp_path: Path) -> None:
    # Text formats with a request line are read per distinct value rather than through
    # parse() per line; what is sent, skipped and counted must not differ by a record.
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"
    bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    lines = []
    for n in range(240):
        stamp = f"30/Nov/2026:{11 + n // 120}:{n // 2 % 60:02d}:{n % 3:02d} +0100"
        target, status = [
            (f"/users/{n}?utm_source=news", 200),
            ("/static/app.css", 200),
            (f"/missing-{n}", 404),
            ("/docs/a.html", 304),
            ("/", 200),
        ][n % 5]
        referer = ["-", "https://www.example.net/x", "", "https://shop.example.org/"][n % 4]
        ua = [agent, bot, "-", 'Agent \\"quoted\\" \\x22x\\x22'][n % 4 if n % 7 else 0]
        took = ["0.120", "-", "0.010,0.020", "1.5"][n % 4] if "%D" not in spec else str(n * 997)
        method = "POST" if n % 11 == 0 else "GET"
        lines.append(
            f'192.0.2.{n % 9} - - [{stamp}] "{method} {target} HTTP/1.1" {status} 5 '
            f'"{referer}" "{ua}" {took}' + (" shop.example.org" if "$host" in spec else "")
        )
    lines[17] = "not a log line"
    lines[40] = lines[40].replace(" 200 ", " 2000 ")
    lines[41] = lines[41].replace("30/Nov", "30/Foo")
    lines[42] = lines[42].replace('"GET /missing-42 HTTP/1.1"', '"GARBAGE"')
    # Lines that fit the format in unusual ways, or almost fit it: each is read as
    # parse() reads it, whichever way the scanned reading takes.
    for at in range(60, 240, 12):
        lines[at : at + len(_TRICKY)] = [change(lines[at]) for change in _TRICKY]
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")

    fmt = parser_for(f"log:{spec}")
    assert isinstance(fmt, TextFormat)
    assert fmt.scan is not None
    results = []
    for parser in (fmt, fmt.parse):  # the second is read line by line through parse()
        results.append(dry_import(parser, log))
    (scanned, by_scan), (parsed, by_parse) = results
    assert by_scan.skipped == by_parse.skipped
    assert by_scan.skipped["bad line"] > 4
    assert min(by_scan.pageviews, by_scan.bots, by_scan.visits) > 0
    assert by_scan == by_parse
    assert scanned == parsed


def dry_import(parser: Parser, log: Path) -> tuple[list[str], ImportSummary]:
    """What a --dry-run --skip-bad-lines import of ``log`` would send, and its summary."""
    sent: list[str] = []
    importer = Importer(
        parser,
        load_resolver(None, None, None),
        client=None,
        tracker_options={"visits_store": "memory"},
        dry_run=True,
        skip_bad_lines=True,
        output=sent.append,
    )
    return sent, importer.run(LineSource([str(log)]))


def _scanned(fmt: TextFormat, line: str) -> tuple[object, ...] | None:
    """What the importer's scanned reading makes of a line, in LogLine's terms; None
    where it gives up (and the importer asks parse())."""
    assert fmt.scan is not None
    found = fmt.scan.match(line)
    if found is None:
        return None
    request, status, stamp, seconds, client, forwarded, referer, agent, ctype, host = found.group(
        *fmt.scan.groups
    )
    words = request.split(" ", 2)
    if len(words) < 2:
        return None
    method, target = words[0], words[1]
    try:
        when = fmt.scan.time(stamp)
        elapsed = parse_seconds(seconds, fmt.scan.seconds_scale)
    except ValueError:
        return None
    if not (len(status) == 3 and status.isdigit()):
        return None
    texts = [text_field(value) for value in (client, forwarded, referer, agent, ctype, host)]
    return (when, method, target, int(status), elapsed, *texts)


@pytest.mark.parametrize(
    "spec",
    [
        "combined",
        "common",
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" $request_time $host',
        '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D',
        '$remote_addr [$time_local] "$request" $status "$request_time"',
        '"$time_local" $remote_addr "$request" $status "$http_user_agent"',
        '$msec $remote_addr "$request" $status "$http_user_agent"',
    ],
)
def test_the_scanned_reading_reads_every_line_as_parse_does(spec: str) -> None:
    fmt = parser_for(spec if spec in ("combined", "common") else f"log:{spec}")
    assert isinstance(fmt, TextFormat)
    values = {
        "$remote_addr": "192.0.2.1", "%h": "192.0.2.1", "$remote_user": "-", "%l": "-",
        "%u": "-", "$time_local": "30/Nov/2026:13:00:00 +0100",
        "%t": "[30/Nov/2026:13:00:00 +0100]", "$request": "GET /a?b=1 HTTP/1.1",
        "%r": "GET /a?b=1 HTTP/1.1", "$status": "200", "%>s": "200",
        "$body_bytes_sent": "5", "%b": "5", "$http_referer": "https://example.net/",
        "%{Referer}i": "https://example.net/", "$http_user_agent": "Mozilla/5.0 (X11) Firefox",
        "%{User-Agent}i": "Mozilla/5.0 (X11) Firefox", "$request_time": "0.120",
        "%D": "120000", "$host": "shop.example.org", "$msec": "1764504000.120",
    }  # fmt: skip
    text = fmt_text = NAMED_TEXT_FORMATS.get(spec, spec)
    for name in sorted(values, key=len, reverse=True):
        text = text.replace(name, values[name])
    assert text != fmt_text
    lines = [text] + [change(text) for change in _TRICKY]
    lines += [text.replace(" ", "\t", 1), text.replace('"', "", 1), text.replace("-", "x")]
    lines += [text.replace("[", ""), text.replace("]", ""), '"' + text, text + '"', ""]
    for line in lines:
        try:
            parsed = fmt.parse(line)
        except ValueError:
            expected = None
        else:
            expected = (
                parsed.time, parsed.method, parsed.target, parsed.status, parsed.elapsed,
                parsed.client_addr, parsed.forwarded_for, parsed.referer,
                parsed.user_agent, parsed.content_type, parsed.host,
            )  # fmt: skip
        assert _scanned(fmt, line) == expected, line


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("combined", '192.0.2.1 - - [10/Oct/0001:00:00:00 +0100] "GET / HTTP/1.1" 200 1 "-" "a"'),
        (
            "nginx-json",
            '{"msec":"1e30","remote_addr":"192.0.2.1","request_method":"GET",'
            '"request_uri":"/","status":"200"}',
        ),
        (
            "nginx-json",
            '{"time_iso8601":"0001-01-01T00:00:00+00:00","remote_addr":"192.0.2.1",'
            '"request_method":"GET","request_uri":"/","status":"200"}',
        ),
        (
            "caddy",
            '{"ts":1e30,"request":{"client_ip":"192.0.2.1","method":"GET","host":"a.example",'
            '"uri":"/"},"status":200}',
        ),
        (
            "caddy",
            '{"ts":-5,"request":{"client_ip":"192.0.2.1","method":"GET","host":"a.example",'
            '"uri":"/"},"status":200}',
        ),
    ],
)
def test_a_time_no_batch_can_carry_is_a_bad_line(fmt: str, line: str, tmp_path: Path) -> None:
    """Before 1970 (the wire's hours are never negative) or past 9998: a bad line with a
    clear reason, skipped with --skip-bad-lines, never a crash or a negative hour sent."""
    with pytest.raises(ValueError, match="before 1970 or after 9998"):
        parser_for(fmt)(line)
    log = tmp_path / "access.log"
    log.write_text(line + "\n", encoding="utf-8")
    sent, summary = dry_import(parser_for(fmt), log)
    assert summary.skipped["bad line"] == 1
    assert summary.requests == 0
    assert not any('"hour":-' in body for body in sent)


@pytest.mark.parametrize("seconds", ["inf", "1e999", "0.1, inf"])
def test_an_infinite_request_time_is_a_bad_line(seconds: str) -> None:
    parse = parser_for('log:$remote_addr [$time_local] "$request" $status "$request_time"')
    with pytest.raises(ValueError, match="request time is not a finite number"):
        parse(f'192.0.2.1 [30/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 "{seconds}"')
