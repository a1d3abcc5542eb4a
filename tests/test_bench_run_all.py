"""``bench/run_all.py`` keeps working as benchmarks change their options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_accepts_the_options_run_all_gives_it() -> None:
    done = subprocess.run(
        [sys.executable, "bench/run_all.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
