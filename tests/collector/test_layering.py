"""Which modules a command loads: an operator's maintenance command stays off the web stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from headcount_collector.stores.sqlite import SQLiteStore
from tests.conftest import site_file_text

_PURGE_AND_LIST_MODULES = """
import json, sys
from headcount_collector.cli import main
code = main(["purge", "--config", sys.argv[1], "--db", sys.argv[2]])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_purge_loads_neither_the_web_app_nor_starlette(tmp_path: Path) -> None:
    site_file = tmp_path / "headcount.toml"
    site_file.write_text(site_file_text())
    database = tmp_path / "data.sqlite3"
    store = SQLiteStore(database)
    store.migrate()
    store.close()
    done = subprocess.run(
        [sys.executable, "-c", _PURGE_AND_LIST_MODULES, str(site_file), f"sqlite:///{database}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["code"] == 0
    modules = set(report["modules"])
    assert "headcount_collector.retention" in modules  # it did run retention
    assert "headcount_collector.app" not in modules
    assert not {m for m in modules if m == "starlette" or m.startswith("starlette.")}
