"""Where a middleware's server CPU goes: py-spy samples of one app server under
``bench/middleware.py``'s load, summed by part.

Run from the repository root (needs ``wrk`` and ``py-spy``, which is not a dev
dependency: ``.venv/bin/pip install py-spy``):

    .venv/bin/python bench/middleware_profile.py [--app fastapi] [--variant with] [--seconds 15]

About 30 s per app. The server is started exactly as ``bench/middleware.py`` starts it
(same variants, pinning and load); py-spy samples it at 250 Hz for one wrk run (under
gunicorn one of the two workers, under uvicorn the process with its thread pool).
Samples whose innermost frame is a wait (lingering for the client's FIN, an idle
thread, the event loop in epoll) are dropped; the rest are the busy samples. A sample counts as
the middleware's when its innermost Headcount or peer frame calls nothing of the app or
framework below it; the parts are then shares of the server's busy samples. The raw
stacks (py-spy's collapsed format, for a flame graph) are left in the named directory.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
from pathlib import Path

from _provenance import print_provenance
from middleware import (
    _WRK_SCRIPT,
    APPS,
    BIN,
    PAGES,
    VARIANTS,
    WARMUP_SECONDS,
    app_server,
    collector,
    run_wrk,
)

# Frames of the app, its framework and the server: a sample with one of them below the
# innermost middleware frame is their work (the app the middleware calls, the server's
# start_response or send it passes on), not the middleware's.
APP_FRAMES = (
    "starlette/", "fastapi/", "jinja2/", "anyio/", "flask/", "werkzeug/", "examples/",
    "gunicorn/", "uvicorn/", "asyncio/",
)  # fmt: skip
# Innermost frames of a process waiting, not working.
IDLE_FRAMES = (
    "close_graceful (gunicorn/util.py:312)",  # gunicorn lingering for the client's FIN
    "Condition.wait",
    "Event.wait",
    "socket.accept",
    "Runner.run",  # uvicorn's event loop in epoll
)
PARTS = (
    # (part, a frame name that puts a sample in it), first match wins
    ("visits", "_visits"),
    ("coarsen and count (record_request)", "record_request"),
    ("read the request (request_info)", "request_info"),
    ("route template (StarletteRoutes)", "StarletteRoutes"),
    ("prometheus_client", "prometheus_client/"),
    ("posthog", "posthog/"),
)


def summarize(stacks: Path) -> list[str]:
    busy = 0
    parts: collections.Counter[str] = collections.Counter()
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(frames[-1].startswith(idle) for idle in IDLE_FRAMES):
            continue
        busy += int(count)
        ours = [i for i, f in enumerate(frames) if "headcount/" in f or "_peer_apps" in f]
        if not ours or any(any(a in f for a in APP_FRAMES) for f in frames[ours[-1] + 1 :]):
            continue
        below = frames[ours[0] :]
        part = next(
            (name for name, mark in PARTS if any(mark in f for f in below)),
            "middleware itself (wrappers, timing, status)",
        )
        parts[part] += int(count)
    total = sum(parts.values())
    lines = [f"  {busy} busy samples; the middleware's share: {total / max(busy, 1):.1%}"]
    lines += [f"    {count / max(busy, 1):6.1%}  {name}" for name, count in parts.most_common()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=("both", "flask", "fastapi"), default="both")
    parser.add_argument("--variant", choices=VARIANTS, default="with")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="directory for the raw stacks")
    args = parser.parse_args()
    spy = BIN / "py-spy"
    if not spy.exists() and shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    spy_command = str(spy) if spy.exists() else "py-spy"
    print_provenance()
    keep = args.keep or Path(tempfile.mkdtemp(prefix="headcount-profile-"))
    keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="headcount-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "pages.lua"
        script.write_text(_WRK_SCRIPT % ", ".join(f'"{p}"' for p in PAGES), encoding="utf-8")
        with collector(workdir) as sink:
            for spec in APPS:
                if args.app != "both" and not spec.name.startswith(args.app):
                    continue
                with app_server(spec, args.variant, sink, workdir) as server:
                    run_wrk(server, WARMUP_SECONDS, script)
                    children = subprocess.run(
                        ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
                    ).stdout.split()
                    gunicorn = spec.name.startswith("flask")
                    target = children[0] if gunicorn and children else str(server.pid)
                    out = keep / f"{spec.name.split()[0]}-{args.variant}.txt"
                    command = [
                        spy_command, "record", "-r", "250", "-f", "raw", "-o", str(out),
                        "-d", str(args.seconds), "-p", target,
                    ]  # fmt: skip
                    with (keep / "py-spy.log").open("ab") as log:
                        sampler = subprocess.Popen(command, stdout=log, stderr=log)
                        run = run_wrk(server, args.seconds, script)
                        sampler.wait()
                    print(
                        f"{spec.name}, {args.variant}: {run.requests_per_second:.1f} req/s, "
                        f"{run.cpu_us_per_request:.1f} µs server CPU per request while sampled"
                    )
                    for line in summarize(out):
                        print(line)
    print(f"raw stacks in {keep}")


if __name__ == "__main__":
    main()
