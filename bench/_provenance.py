"""What a benchmark's figures were measured on: the commit and the interpreter.

Not a benchmark itself. Every script under ``bench/`` calls ``print_provenance()`` first,
so a pasted result always says which code and which Python produced it. Scripts are run
from the repository root with the interpreter the README's setup creates:
``.venv/bin/python bench/NAME.py``.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def provenance() -> str:
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown (not a git checkout)"
    # Uncommitted edits under the measured code make the hash alone misleading.
    if _git("status", "--porcelain", "--untracked-files=no", "--", "sdk", "collector", "bench"):
        commit += " + uncommitted changes"
    return (
        f"commit {commit}\n"
        f"python {sys.executable} ({platform.python_implementation()} {platform.python_version()})"
    )


def print_provenance() -> None:
    print(provenance(), flush=True)
    if Path.cwd().resolve() != ROOT:
        print(f"note: not run from the repository root ({ROOT})", flush=True)
