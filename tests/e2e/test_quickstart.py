"""The README's Quickstart, run as a newcomer would: a fresh clone, command one, counts appear."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests._servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quickstart_is_exactly_two_commands_and_ci_runs_the_second() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "headcount-collector demo" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()


@pytest.mark.slow
def test_quickstart_demo_from_a_fresh_clone(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.fail("the Quickstart test needs the git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    command = quickstart_commands()[0]
    command += f" --duration 25 --port {free_port()} --app-port {free_port()}"
    temp = tmp_path / "system-temp"
    temp.mkdir()
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env={**os.environ, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/v1/stats" in done.stdout
    assert re.search(
        r"Dashboard \(sign in with the read token\): http://127\.0\.0\.1:\d+/\n", done.stdout
    )
    final = [line for line in done.stdout.splitlines() if line.startswith("final pageviews:")]
    assert final
    counts = [int(n) for n in re.findall(r" (\d+)", final[0])]
    assert counts
    assert sum(counts) > 20
    assert "/users/{id}" in final[0]
    # Simulated browsers send what browsers send: clicks inside the site are internal,
    # not (other) referrers, and they are not entries.
    figures = dict(
        line.split(": ", 1) for line in done.stdout.splitlines() if line.startswith("final ")
    )
    entries = sum(int(n) for n in re.findall(r" (\d+)", figures["final entries"]))
    assert 0 < entries < sum(counts)
    assert "(internal)" in figures["final referrers"]
    assert "(other)" not in figures["final referrers"]
    # Where suppression folded groups, the demo says what (other) holds.
    explained = "(other): groups below k" in done.stdout
    assert explained == any("(other)" in text for text in figures.values())
    assert not list(temp.iterdir())  # the demo removed what it created
