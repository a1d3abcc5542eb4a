"""The collector's boundary with the SDK: it shares the wire format, nothing else."""

from __future__ import annotations

import json
import subprocess
import sys

import headcount

_LOADED_BY_THE_COLLECTOR = """
import json, sys
import headcount_collector.app
print(json.dumps(sorted(sys.modules)))
"""


def test_the_collector_app_loads_the_wire_format_but_not_the_tracker_or_httpx() -> None:
    # A fresh interpreter: this one has long imported the whole SDK.
    result = subprocess.run(
        [sys.executable, "-c", _LOADED_BY_THE_COLLECTOR],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert "headcount.wire" in loaded
    assert {
        "httpx",
        "headcount._tracker",
        "headcount._sender",
        "headcount._settings",
    } & loaded == set()


def test_every_exported_name_loads_on_first_use() -> None:
    for name in headcount.__all__:
        assert getattr(headcount, name) is not None
    assert set(headcount.__all__) <= set(dir(headcount))
