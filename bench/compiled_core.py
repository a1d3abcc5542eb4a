"""What compiling the SDK's request path with mypyc would give: the hot path, compiled
against pure Python, in interleaved rounds.

    .venv/bin/python bench/compiled_core.py [--rounds 5] [--per-round 1000] [--import-lines 0]

An experiment, not a build: the SDK ships as pure Python. This copies ``sdk/headcount``
into a temporary directory, makes three changes there that mypyc needs (below), compiles
the modules of the request path with mypyc (it comes with mypy, a dev dependency; gcc
and the Python headers are on the machine), then runs ``bench/hotpath.py`` alternately
against this checkout and against the compiled copy (``PYTHONPATH``), each in its own
process, and prints each row's cost as a share of prometheus_client's in the same
process (medians of rounds), and compiled against pure. With ``--import-lines N`` it
also runs ``bench/import.py --against`` the compiled copy.

The three changes, each needed only by compiled code:
- ``Tracker.__init__`` gathers its options with ``locals()``, which compiled code does
  not support as the interpreter does: the copy spells the options out;
- ``Tracker.from_options`` calls ``cls.__new__(cls)``, which mypyc cannot compile: the
  copy calls ``object.__new__(cls)`` (not called by the hot path);
- the at-fork hook holds the tracker by a weak reference, which compiled classes do not
  support here: the copy registers no hook (the benchmark never forks). Holding the
  tracker strongly instead kept every tracker of a run, and its sender thread, alive,
  which slowed the rows measured later.
``_request.py`` stays interpreted: the integrations and the importer make RequestInfo
with ``object.__new__``, which a compiled class refuses.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _provenance import ROOT, print_provenance

COMPILED = [
    "headcount/_tracker.py",
    "headcount/_table.py",
    "headcount/_visits/_memory.py",
    "headcount/_visits/_link.py",
    "headcount/_coarsen.py",
    "headcount/_referrer.py",
    "headcount/_bots.py",
    "headcount/_proxies.py",
]


def patches() -> list[tuple[str, str]]:
    """(this, becomes that) in the copy's _tracker.py."""
    from headcount._tracker import _NOT_OPTIONS, Tracker

    options = [
        name
        for name in inspect.signature(Tracker.__init__).parameters
        if name != "self" and name not in _NOT_OPTIONS
    ]
    return [
        (
            "options = {name: value for name, value in locals().items() if name not in _NOT_OPTIONS}",
            "options = dict(" + ", ".join(f"{name}={name}" for name in options) + ")",
        ),
        ("tracker = cls.__new__(cls)", "tracker = object.__new__(cls)"),
        (
            "os.register_at_fork(\n"
            "                after_in_child=functools.partial(_reset_in_child, weakref.ref(self))\n"
            "            )",
            "pass",
        ),
    ]


# "headcount api    925   3854   0.24   59.4x": name, ns, prometheus ns, share, posthog.
_ROW = re.compile(r"^(headcount[^\d]*?)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+[\d.]+x$")
_VISITS = re.compile(r"^(pageview visits=[^\d]*?)\s+(\d+)\s+[\d.]+x\s+-?\d+$")


def build(into: Path) -> Path:
    sdk = into / "sdk"
    shutil.copytree(ROOT / "sdk" / "headcount", sdk / "headcount")
    tracker = sdk / "headcount" / "_tracker.py"
    text = tracker.read_text(encoding="utf-8")
    for old, new in patches():
        if old not in text:
            raise SystemExit(f"_tracker.py changed; update this script's patch for: {old}")
        text = text.replace(old, new)
    tracker.write_text(text, encoding="utf-8")
    mypyc = Path(sys.executable).with_name("mypyc")
    done = subprocess.run(
        [str(mypyc), *COMPILED], cwd=sdk, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"mypyc failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return sdk


def hotpath(pythonpath: str | None, rounds: int, per_round: int) -> dict[str, tuple[int, float]]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "hotpath.py"), "--rounds", str(rounds),
         "--per-round", str(per_round)],
        capture_output=True, text=True, check=True, env=env, cwd=ROOT,
    )  # fmt: skip
    rows: dict[str, tuple[int, float]] = {}
    for line in done.stdout.splitlines():
        if found := _ROW.match(line):
            rows[found[1].strip()] = (int(found[2]), float(found[4]))
        elif found := _VISITS.match(line):
            rows[found[1].strip()] = (int(found[2]), 0.0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating pairs of runs")
    parser.add_argument("--per-round", type=int, default=1000, help="hotpath.py's own")
    parser.add_argument("--import-lines", type=int, default=0)
    args = parser.parse_args()
    print_provenance()
    with tempfile.TemporaryDirectory(prefix="hc-compiled-") as tmp:
        sdk = build(Path(tmp))
        print(f"compiled with mypyc: {', '.join(COMPILED)}", flush=True)
        pure: dict[str, list[tuple[int, float]]] = {}
        compiled: dict[str, list[tuple[int, float]]] = {}
        for number in range(args.rounds):
            for side, path in ((pure, None), (compiled, str(sdk))):
                for name, value in hotpath(path, 3, args.per_round).items():
                    side.setdefault(name, []).append(value)
            print(f"round {number + 1} of {args.rounds} done", flush=True)
        print(f"\nmedians of {args.rounds} runs each (hotpath.py --rounds 3 --per-round "
              f"{args.per_round}), alternating; x prom: share of prometheus_client's cost "
              "in the same run")  # fmt: skip
        print(f"{'':48}{'pure ns':>9}{'x prom':>8}{'compiled ns':>13}{'x prom':>8}{'ratio':>8}")
        for name, values in pure.items():
            other = compiled.get(name)
            if not other:
                continue
            ns, share = (
                statistics.median(v[0] for v in values),
                statistics.median(v[1] for v in values),
            )
            c_ns, c_share = (
                statistics.median(v[0] for v in other),
                statistics.median(v[1] for v in other),
            )
            shares = f"{share:8.2f}" if share else f"{'':8}"
            c_shares = f"{c_share:8.2f}" if c_share else f"{'':8}"
            print(f"{name:48}{ns:9.0f}{shares}{c_ns:13.0f}{c_shares}{c_ns / ns:8.2f}")
        if args.import_lines:
            print("\nthe import, pure against compiled (bench/import.py --against):", flush=True)
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "import.py"), "--lines",
                 str(args.import_lines), "--rounds", "3", "--against", str(sdk)],
                check=True, cwd=ROOT,
            )  # fmt: skip


if __name__ == "__main__":
    main()
