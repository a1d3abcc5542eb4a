"""Every shell and Python snippet in README.md and docs/ runs, or is checked, here.

How each block is handled, by language:

- ``python``: run in a fresh interpreter (with ``HEADCOUNT_WRITE_TOKEN`` set, as the
  snippets expect), so an undefined name or a wrong import fails.
- ``sh``: each command is run in a scratch directory, in order, when it is a
  ``headcount-collector`` command (``serve`` until it answers ``/healthz``); commands that
  install, build or benchmark are checked instead (the extras they name exist, the
  script and its options exist), each with the reason stated in ``checked_only``.
- ``toml`` site files load with the collector's own loader; ``json`` parses.
- Any other block (``sql``) must be preceded by ``<!-- docs-test: skip: REASON -->``.

A block may opt out the same way; the marker must give a reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from headcount._bots import is_bot
from headcount_collector.cli import build_parser
from headcount_collector.config import parse_sites, token_digest
from tests._servers import answers_http, free_port, spawn
from tests.conftest import site_file_text

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(
    r"(?:<!--\s*docs-test:\s*skip:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Snippet:
    file: Path
    line: int
    lang: str
    body: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def snippets(lang: str | None = None) -> list[Snippet]:
    found: list[Snippet] = []
    for file in DOCS:
        text = file.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            if not match["lang"]:
                continue  # program output, not something to run
            line = text.count("\n", 0, match.start("lang")) + 1
            snippet = Snippet(file, line, match["lang"], match["body"], match["reason"])
            if lang is None or snippet.lang == lang:
                found.append(snippet)
    return found


def params(lang: str) -> list[object]:
    return [pytest.param(s, id=s.id) for s in snippets(lang)]


def test_every_block_is_handled_or_skipped_with_a_reason() -> None:
    handled = {"python", "sh", "toml", "json"}
    for snippet in snippets():
        if snippet.lang not in handled:
            assert snippet.skip_reason, f"{snippet.id}: a {snippet.lang} block needs a skip reason"
        if snippet.skip_reason is not None:
            assert len(snippet.skip_reason) > 10, f"{snippet.id}: say why it is skipped"
    assert len(snippets("python")) >= 4
    assert len(snippets("sh")) >= 10


# --- python --------------------------------------------------------------------------------


@pytest.mark.parametrize("snippet", params("python"))
def test_python_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.skip_reason:
        compile(snippet.body, snippet.id, "exec")
        return
    script = tmp_path / "snippet.py"
    script.write_text(snippet.body, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "HEADCOUNT_WRITE_TOKEN": "hcw_docs-test-token",
            "PYTHONPATH": str(ROOT),
        },
    )
    assert done.returncode == 0, f"{snippet.id}:\n{snippet.body}\n{done.stderr}"


# --- toml and json -------------------------------------------------------------------------


@pytest.mark.parametrize("snippet", params("toml"))
def test_toml_snippet_is_a_site_file_that_loads(snippet: Snippet) -> None:
    text = snippet.body.replace('"<hex digest>"', '"{}"')
    digests = iter(token_digest(f"hc_docs_{i}").hex() for i in range(100))
    text = re.sub(r'"\{\}"', lambda _: f'"{next(digests)}"', text)
    tomllib.loads(text)
    parse_sites(text, snippet.id)


@pytest.mark.parametrize("snippet", params("json"))
def test_json_snippet_parses(snippet: Snippet) -> None:
    json.loads(snippet.body)


# --- sh --------------------------------------------------------------------------------------


def commands(body: str) -> list[str]:
    """Lines of a shell block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    out: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def check_pip(command: str) -> None:
    """Every extra named in a pip install line exists."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(pyproject["project"]["optional-dependencies"])
    for requirement in re.findall(r"\[([a-z,]+)\]", command):
        for extra in requirement.split(","):
            assert extra in extras, f"{command}: no extra {extra!r}"


def check_curl(command: str) -> None:
    """A curl line that claims to count as a visitor must look like a browser to the SDK."""
    body = command.split(" do ", 1)[-1].rsplit("; done", 1)[0]
    args = shlex.split(body)
    agent = args[args.index("-A") + 1] if "-A" in args else "curl/8"
    assert not is_bot(agent), f"{command}: the SDK would count this as a bot"
    assert "Sec-Fetch-Dest: document" in args


def check_bench(command: str) -> None:
    """A benchmark line names a script that exists and options it accepts (running the
    benchmarks takes minutes; docs/benchmarks.md records when they were run)."""
    words = shlex.split(command.split("#", 1)[0])
    script = next(w for w in words if w.startswith("bench/"))
    assert (ROOT / script).exists(), command
    help_text = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    ).stdout
    for option in (w for w in words if w.startswith("--")):
        assert option in help_text, f"{command}: {script} has no {option}"


class Sandbox:
    """A directory standing in for the machine the docs talk about."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("HEADCOUNT_CONFIG", "HEADCOUNT_METRICS_TOKEN")
        }
        for folder in ("etc", "var-lib", "backups"):
            (root / folder).mkdir()
        # The deployment doc starts from an existing site file.
        (root / "etc" / "sites.toml").write_text(site_file_text(), encoding="utf-8")

    def localise(self, command: str) -> str:
        command = command.replace("/etc/headcount/", f"{self.root}/etc/")
        command = command.replace("/var/lib/headcount/", f"{self.root}/var-lib/")
        command = command.replace("/var/backups/", f"{self.root}/backups/")
        return command.replace("headcount-collector ", f"{sys.executable} -m headcount_collector ")

    def run(self, command: str, where: str) -> None:
        if " serve" in command:
            self.serve(command, where)
            return
        done = subprocess.run(
            ["bash", "-c", self.localise(command)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=self.env,
        )
        assert done.returncode == 0, f"{where}: {command}\n{done.stdout}\n{done.stderr}"

    def serve(self, command: str, where: str) -> None:
        port = free_port()
        command = re.sub(r"--port \d+", f"--port {port}", command)
        if "--port" not in command:
            command += f" --port {port}"
        server = spawn(
            where,
            ["bash", "-c", "exec " + self.localise(command)],
            self.root / f"serve-{port}.log",
            cwd=self.root,
            env=self.env,
        )
        try:
            server.wait_until(
                answers_http(f"http://127.0.0.1:{port}/healthz", lambda r: r.is_success)
            )
        finally:
            server.stop(timeout=20)


def handle(command: str, sandbox: Sandbox, where: str) -> str | None:
    """Run or check one command; returns why it was only checked, if it was."""
    if "pip install" in command or "pip wheel" in command:
        check_pip(command)
        return "installs packages: the extras are checked; .ci/run and the Quickstart install"
    if re.search(r"\bcurl\b", command):
        check_curl(command)
        return "needs an instrumented app: the request is checked to count as a pageview"
    if "bench/" in command:
        check_bench(command)
        return "benchmarks take minutes: the script and its options are checked"
    if command.startswith("headcount-collector") or "| headcount-collector" in command:
        if "postgresql://" in command and "db.internal" in command:
            args = shlex.split(command)[1:]
            build_parser().parse_args(args)  # options checked; the host is an example
            return "names an example database host: the options are checked"
        sandbox.run(command, where)
        return None
    raise AssertionError(f"{where}: no rule for {command!r}; run it here or skip the block")


@pytest.mark.parametrize("file", DOCS, ids=lambda f: str(f.relative_to(ROOT)))
def test_shell_snippets_run_in_order(file: Path, tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    checked_only: list[str] = []
    for snippet in snippets("sh"):
        if snippet.file != file or snippet.skip_reason:
            continue
        for command in commands(snippet.body):
            reason = handle(command, sandbox, snippet.id)
            if reason is not None:
                checked_only.append(f"{snippet.id}: {reason}")
    print("\n".join(checked_only))


def test_the_options_table_lists_every_tracker_option() -> None:
    from headcount._settings import option_names

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Options", 1)[1].split("\n\n", 2)[1]
    documented = set(
        re.findall(
            r"`([a-z_]+)`",
            "\n".join(r.split("|")[1] for r in table.splitlines() if r.startswith("| `")),
        )
    )
    options = set(option_names())
    assert options - documented == set(), "options missing from README's table"
    assert documented - options == set(), "README's table names options that do not exist"


def test_the_options_tables_defaults_are_the_settings_defaults() -> None:
    import msgspec

    from headcount import TrackerSettings

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Options", 1)[1].split("\n\n", 2)[1]
    defaults = {f.name: f.default for f in msgspec.structs.fields(TrackerSettings)}

    def shown(value: object) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    checked = 0
    for row in table.splitlines()[2:]:
        names_cell, default_cell = row.split("|")[1:3]
        names = re.findall(r"`([a-z_]+)`", names_cell)
        written = re.findall(r"`([^`]+)`", default_cell)
        # Rows such as "16 MiB, 24 h" or "none" are prose; literal defaults are in code.
        if written and len(written) == len(names):
            for name, text in zip(names, written, strict=True):
                assert text == shown(defaults[name]), name
                checked += 1
    assert checked >= 15


def test_the_citus_section_distributes_every_table_but_hc_meta(tmp_path: Path) -> None:
    """A table a schema version adds must be named there too (or the sharded database
    would keep it on the coordinator, apart from its site's rows)."""
    import sqlite3

    from headcount_collector.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "schema.sqlite3")
    store.migrate()
    store.close()
    with sqlite3.connect(tmp_path / "schema.sqlite3") as conn:
        tables = {
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name.startswith("hc_")
        }
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    distributed = set(re.findall(r"create_distributed_table\('(\w+)'", text))
    assert distributed == tables - {"hc_meta"}
