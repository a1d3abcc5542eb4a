"""Build the labelled user-agent corpus that bench/bots.py and the tests measure against.

Run: .venv/bin/python bench/bot_corpus.py [--out tests/data/user_agents.tsv]

Sources, both maintained lists shipped as packages on PyPI (fetched with
``pip download --no-deps`` into a temporary directory; nothing is installed):

- ``crawler-user-agents`` (the crawler list behind many bot detectors): every pattern
  carries real user agents it was seen with ("instances") and tags. The tags give the
  label: ``ai-crawler`` -> ai, ``search-engine`` -> search, ``social-preview`` -> social,
  ``monitoring`` -> monitor, anything else (seo, scanners, feed readers, HTTP libraries,
  archivers, headless browsers, ...) -> other. A pattern with several tags takes the
  first of ai, search, social, monitor that it has.
- ``fake-useragent``: real browser user agents with their observed share of traffic
  (desktop, mobile, tablet, in-app browsers), labelled browser.

Plus a short supplement written by hand from the field report of issue 14, marked
``issue-14`` in the source column: phones whose model names contain crawler words
(a CUBOT Android phone was counted as a bot).

The output is a tab-separated file: label, source, user agent; sorted, deduplicated.
A user agent listed both as a browser and as a crawler is dropped (it cannot be labelled).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from _provenance import print_provenance

CRAWLERS = "crawler-user-agents==1.67.0"
BROWSERS = "fake-useragent==2.2.0"
CATEGORY_BY_TAG = {
    "ai-crawler": "ai",
    "search-engine": "search",
    "social-preview": "social",
    "monitoring": "monitor",
}
CATEGORY_ORDER = ("ai", "search", "social", "monitor")

# Real device names (CUBOT's phone line) in the user agents their stock browsers send.
SUPPLEMENT_BROWSERS = (
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; CUBOT NOTE 20 PRO) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/118.0.5993.111 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 9; CUBOT_P30 Build/PPR1.180610.011) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/116.0.5845.163 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; CUBOT KINGKONG 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; CUBOT P80) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
)


def download(requirement: str, into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), requirement],
        check=True,
    )
    name = requirement.split("==")[0].replace("-", "_")
    (wheel,) = into.glob(f"{name}-*.whl")
    return wheel


def crawler_rows(wheel: Path) -> list[tuple[str, str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith("crawler-user-agents.json")]
        entries = json.loads(archive.read(member))
    rows: list[tuple[str, str, str]] = []
    for entry in entries:
        categories = {CATEGORY_BY_TAG.get(tag, "other") for tag in entry.get("tags", ())}
        label = next((c for c in CATEGORY_ORDER if c in categories), "other")
        rows.extend((label, "crawler-user-agents", ua) for ua in entry.get("instances", ()))
    return rows


def browser_rows(wheel: Path) -> list[tuple[str, str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith("browsers.jsonl")]
        lines = archive.read(member).decode().splitlines()
    return [("browser", "fake-useragent", json.loads(line)["useragent"]) for line in lines if line]


def clean(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    labels: dict[str, set[str]] = {}
    first: dict[str, tuple[str, str, str]] = {}
    for label, source, ua in rows:
        # One browser entry of the list is wrapped in quotes, which no browser sends.
        ua = ua.strip().strip('"').strip()
        if not ua or "\t" in ua or "\n" in ua:
            continue
        labels.setdefault(ua, set()).add("browser" if label == "browser" else "bot")
        first.setdefault(ua, (label, source, ua))
    return sorted(row for ua, row in first.items() if len(labels[ua]) == 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data/user_agents.tsv"))
    args = parser.parse_args()
    print_provenance()
    with tempfile.TemporaryDirectory() as tmp:
        rows = crawler_rows(download(CRAWLERS, Path(tmp)))
        rows += browser_rows(download(BROWSERS, Path(tmp)))
    rows += [("browser", "issue-14", ua) for ua in SUPPLEMENT_BROWSERS]
    rows = clean(rows)
    header = (
        f"# label\tsource\tuser agent; built by bench/bot_corpus.py from {CRAWLERS}, {BROWSERS}\n"
    )
    args.out.write_text(header + "".join("\t".join(row) + "\n" for row in rows))
    counts: dict[str, int] = {}
    for label, _, _ in rows:
        counts[label] = counts.get(label, 0) + 1
    print(f"{args.out}: {len(rows)} user agents", dict(sorted(counts.items())))


if __name__ == "__main__":
    main()
