"""The site file: a bad one stops the process with file, key and problem; init makes a good one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from headcount_collector.config import Settings, load_sites, token_digest
from headcount_collector.errors import ConfigError
from tests.conftest import READ_TOKEN, WRITE_TOKEN, site_file_text

GOOD = site_file_text()


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            GOOD.replace('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'),
            "sites[0].timezone",
            "unknown IANA",
        ),
        (GOOD.replace("k = 5", "k = 0"), "sites[0].k", ">= 1"),
        (GOOD.replace("k = 5", 'k = "five"'), "sites[0].k", "Expected `int`"),
        (GOOD.replace('id = "blog"', 'id = "Blog Site"'), "sites[0].id", "matching regex"),
        (GOOD.replace('id = "shop"', 'id = "blog"'), "sites[1].id", "duplicate site id"),
        (
            GOOD.replace("keep_days = 760", "keep_days = 7"),
            "sites[0].keep_days",
            "at least hourly_days",
        ),
        (GOOD.replace("k = 5", "k = 5\nsample_rate = 2"), "sites[0].sample_rate", "unknown field"),
        (
            GOOD.replace('write_token_sha256 = "', 'write_token = "', 1),
            "sites[0].write_token",
            "the file holds only digests",
        ),
        (
            GOOD.replace('plan = ["free", "pro"]', 'plan = ["Free Plan"]'),
            "sites[0].events[0].props[...][0]",
            "matching regex",
        ),
        (
            GOOD + "[[sites]]" + GOOD.split("[[sites]]")[2].replace('id = "shop"', 'id = "shop2"'),
            "sites[2].write_token_sha256",
            "used twice",
        ),
        ("sites = []", "sites", "length >= 1"),
        ("[[sites]\nid=", "", "not valid TOML"),  # the whole file: no key
    ],
)
def test_bad_config_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_sites(path)
    assert caught.value.file == str(path)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(path) in str(caught.value)
    assert ": -:" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_sites(tmp_path / "absent.toml")


def test_tokens_find_only_their_site(site_file: Path) -> None:
    sites = load_sites(site_file)
    blog = sites.by_write_token(WRITE_TOKEN)
    assert blog is not None
    assert blog.id == "blog"
    assert sites.by_read_token(WRITE_TOKEN) is None
    assert sites.by_write_token(READ_TOKEN) is None
    reader = sites.by_read_token(READ_TOKEN)
    assert reader is not None
    assert reader.id == "blog"
    assert sites.by_write_token(WRITE_TOKEN[:-1]) is None
    assert blog.write_token_sha256 == token_digest(WRITE_TOKEN)
    assert blog.events["signup"].props["plan"] == frozenset({"free", "pro"})


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="port"):
        Settings(config_path="x", port=70000)
    with pytest.raises(ValueError, match="48 hours"):
        Settings(config_path="x", dedupe_seconds=3600)


@pytest.mark.slow
def test_init_writes_digests_and_prints_tokens_once(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "headcount_collector",
            "init",
            "--config",
            str(path),
            "--site",
            "blog",
            "--timezone",
            "Europe/Berlin",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    tokens = [
        line.split(":", 1)[1].strip()
        for line in done.stdout.splitlines()
        if "token" in line and ":" in line
    ]
    write, read = tokens[-2], tokens[-1]
    text = path.read_text()
    assert write not in text
    assert read not in text
    sites = load_sites(path)
    site = sites.by_write_token(write)
    assert site is not None
    assert site.id == "blog"
    assert sites.by_read_token(read) is site
    again = subprocess.run(
        [sys.executable, "-m", "headcount_collector", "init", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert again.returncode == 1
    assert "exists" in again.stderr


@pytest.mark.slow
def test_serve_with_bad_config_stops_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(GOOD.replace("k = 5", "k = -1"), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "headcount_collector",
            "serve",
            "--config",
            str(path),
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{path}: sites[0].k:" in done.stderr


@pytest.mark.slow
def test_serve_with_unreachable_database_says_so(tmp_path: Path, site_file: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "headcount_collector",
            "serve",
            "--config",
            str(site_file),
            "--db",
            "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 3
    assert "database is unavailable" in done.stderr
    assert "Traceback" not in done.stderr
