"""Where the middleware's cost goes: the WSGI and ASGI middlewares driven in process, the
way gunicorn and uvicorn drive them, layer by layer, against the bare app in the same run.

Run from the repository root:

    .venv/bin/python bench/middleware_layers.py [--rounds 9] [--per-round 10000] [--browser-headers]

About a minute. ``bench/hotpath.py`` times ``Tracker.record_request`` on a prepared
``RequestInfo``; a server also pays for the integration around it. Each request here is
a new environ (or scope) for a pageview with a browser user agent and an external
referrer, like ``bench/middleware.py``'s load, answered by a minimal app (WSGI: a
``ClosingIterator`` body, as Werkzeug returns; ASGI: a start and a body message), and
the server's part (iterate the body, close it; await the app) is done here. The request
has four header lines, as wrk's; ``--browser-headers`` adds the twelve others a browser's
navigation carries, which every integration reads through. Layers:

- ``bare``: the app alone: the baseline;
- ``integration``: the Headcount middleware with a tracker whose ``record_request`` does
  nothing: timing, status capture, the body wrapper, reading the request into a
  ``RequestInfo``;
- ``visits off``: the middleware with a real tracker, visits off;
- ``full``: the middleware with a real tracker as shipped (visits in memory);
- ``prometheus``: a Counter and a Histogram labelled route/method/status, observed by a
  minimal middleware of the same shape (the peer the goal names).

Figures: median over interleaved rounds of the mean µs per request, and the cost each
adds over ``bare``. The collector address is an unused local port and the send interval
an hour, so nothing is sent while measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from werkzeug.wsgi import ClosingIterator

from _peer_apps import prometheus_observer
from _provenance import print_provenance
from headcount import RequestInfo, Tracker
from headcount.integrations.asgi import HeadcountMiddleware as AsgiMiddleware
from headcount.integrations.wsgi import HeadcountMiddleware as WsgiMiddleware

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
REFERRER = "https://news.example.org/item"
ROUTE = "/users/<int:id>"
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


# The rest of what a browser sends with a navigation (Chrome 124), for --browser-headers:
# the integrations read every header line, so their cost grows with the count.
BROWSER_HEADERS: list[tuple[str, str]] = [
    ("connection", "keep-alive"),
    ("sec-ch-ua", '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("upgrade-insecure-requests", "1"),
    ("sec-fetch-site", "cross-site"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-user", "?1"),
    ("sec-fetch-dest", "document"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-GB,en;q=0.9"),
    ("cookie", "session=0f3c9a; theme=dark"),
]


class _FileWrapper:
    """The server's file wrapper class, as gunicorn puts one in every environ."""


def new_environ(extra: list[tuple[str, str]]) -> Environ:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/users/1",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": BROWSER,
        "HTTP_ACCEPT": "text/html",
        "HTTP_REFERER": REFERRER,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.multiprocess": False,
        "wsgi.file_wrapper": _FileWrapper,
    }
    for name, value in extra:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def wsgi_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    environ["headcount.route"] = ROUTE
    return ClosingIterator([b"<h1>hi</h1>"], [])


def server_start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> Callable[[bytes], object]:
    return len


def serve_wsgi(
    app: Callable[[Environ, StartResponse], Iterable[bytes]],
    n: int,
    extra: list[tuple[str, str]],
) -> None:
    """What gunicorn's sync worker does with the app's answer."""
    for _ in range(n):
        body = app(new_environ(extra), server_start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def new_scope(extra: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/users/1",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", BROWSER.encode()),
            (b"accept", b"text/html"),
            (b"referer", REFERRER.encode()),
            *extra,
        ],
        "client": ("127.0.0.1", 50000),
        "headcount.route": "/users/{id:int}",
    }


async def asgi_app(scope: Scope, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"<h1>hi</h1>"})


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Message) -> None:
    return None


def serve_asgi(app: Any, n: int, extra: list[tuple[bytes, bytes]]) -> None:
    async def serve() -> None:
        for _ in range(n):
            await app(new_scope(extra), receive, send)

    asyncio.run(serve())


class _NoRecording:
    """A tracker stand-in that records nothing: what is left is the integration."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def record_request(self, info: RequestInfo) -> None:
        return None

    def served_by_several_processes(self) -> None:
        return None


Observe = Callable[[str, str, int, float, str, str], None]


def prometheus_wsgi(app: Any, observe: Observe) -> Any:
    def middleware(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        status = [500]

        def capture(code: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(code[:3])
            return start_response(code, headers)

        body: Iterable[bytes] = app(environ, capture)
        observe(
            environ.get("headcount.route", "(unmatched)"),
            environ["REQUEST_METHOD"],
            status[0],
            time.perf_counter() - started,
            environ.get("HTTP_USER_AGENT", ""),
            environ.get("HTTP_REFERER", ""),
        )
        return body

    return middleware


def prometheus_asgi(app: Any, observe: Observe) -> Any:
    async def middleware(scope: Scope, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await app(scope, receive, capture)
        headers = dict(scope["headers"])
        observe(
            scope.get("headcount.route", "(unmatched)"),
            scope["method"],
            status,
            time.perf_counter() - started,
            headers.get(b"user-agent", b"").decode("latin-1"),
            headers.get(b"referer", b"").decode("latin-1"),
        )

    return middleware


def trackers() -> dict[str, Tracker]:
    options: dict[str, Any] = {
        "endpoint": "http://127.0.0.1:9",  # nothing listens: nothing is sent
        "write_token": "hcw_bench",
        "flush_interval": 3600,
    }
    return {"visits off": Tracker(visits=False, **options), "full": Tracker(**options)}


def measure(runners: dict[str, Callable[[int], None]], rounds: int, n: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(n)  # warm caches, fill the visit table with this one browser
    gc.collect()
    for round_index in range(rounds):
        names = list(runners)
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter_ns()
            runners[name](n)
            samples[name].append((time.perf_counter_ns() - start) / n / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--per-round", type=int, default=10_000)
    parser.add_argument(
        "--browser-headers",
        action="store_true",
        help="send the other 12 header lines a browser's navigation carries (Chrome 124)",
    )
    args = parser.parse_args()
    extra = BROWSER_HEADERS if args.browser_headers else []
    extra_by_kind: dict[str, Any] = {
        "WSGI": extra,
        "ASGI": [(name.encode(), value.encode()) for name, value in extra],
    }
    if args.rounds < 1 or args.per_round < 1:
        raise SystemExit("--rounds and --per-round must be >= 1")
    print_provenance()
    real = trackers()
    try:
        stand_in = _NoRecording(real["full"].settings)
        layers: dict[str, tuple[Any, Any]] = {
            "bare": (wsgi_app, asgi_app),
            "integration": (
                WsgiMiddleware(wsgi_app, stand_in),  # type: ignore[arg-type]
                AsgiMiddleware(asgi_app, stand_in),  # type: ignore[arg-type]
            ),
            **{
                name: (WsgiMiddleware(wsgi_app, tracker), AsgiMiddleware(asgi_app, tracker))
                for name, tracker in real.items()
            },
            "prometheus": (
                prometheus_wsgi(wsgi_app, prometheus_observer()),
                prometheus_asgi(asgi_app, prometheus_observer()),
            ),
        }
        for index, kind in enumerate(("WSGI", "ASGI")):
            serve = serve_wsgi if kind == "WSGI" else serve_asgi

            def runner(
                app: Any, serve: Callable[[Any, int, Any], None] = serve, kind: str = kind
            ) -> Callable[[int], None]:
                return lambda n: serve(app, n, extra_by_kind[kind])

            runners = {name: runner(apps[index]) for name, apps in layers.items()}
            medians = measure(runners, args.rounds, args.per_round)
            bare = medians["bare"]
            headers = len(new_scope(extra_by_kind["ASGI"])["headers"])
            print(f"\n{kind}, {args.rounds} rounds x {args.per_round} requests, {headers} headers")
            print(f"  {'layer':<12}{'µs/request':>11}{'added µs':>10}{'added / prometheus':>20}")
            added_prometheus = medians["prometheus"] - bare
            for name, value in medians.items():
                added = value - bare
                print(
                    f"  {name:<12}{value:11.2f}{added:+10.2f}"
                    f"{added / added_prometheus if name != 'bare' else 0:19.2f}x"
                )
    finally:
        for tracker in real.values():
            tracker.shutdown(timeout=0.1)


if __name__ == "__main__":
    main()
