"""Bot detectors compared on the labelled corpus: precision, recall, category, µs per call.

Run: .venv/bin/python bench/bots.py [--baseline-rev 56f3aa5] [--rounds 5]

Candidates, measured in the same run:
- previous: ``headcount/_bots.py`` as of ``--baseline-rev`` (substring tokens), loaded
  from git history; the baseline of every ratio.
- crawlerdetect: ``CrawlerDetect().isCrawler`` (in the ``dev`` extra only).
- headcount: the current ``headcount._bots.bot_category`` (names plus shape, with a
  category).

Quality is measured on ``tests/data/user_agents.tsv`` (bench/bot_corpus.py): a bot is a
positive. Precision = bots flagged that are bots; recall = bots flagged of all bots.
Category accuracy = flagged bots whose category matches the corpus label (from the
source list's tags).

Cost: "uncached" is a first sight of each user agent (every cache cleared per round);
"cached" is a stream of 200,000 calls drawn from the corpus with Zipf-like weights, as a
site's traffic repeats a few hundred agents, through a 4096-entry LRU cache per
detector (the previous and current detectors have theirs built in; crawlerdetect gets
one here). Medians over rounds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from crawlerdetect import CrawlerDetect

from _provenance import print_provenance
from headcount import _bots

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "user_agents.tsv"
STREAM = 200_000


def load_corpus() -> list[tuple[str, str]]:
    rows = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, _source, agent = line.split("\t")
            rows.append((label, agent))
    return rows


def previous_detector(rev: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:sdk/headcount/_bots.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("previous_bots")
    exec(compile(source, f"{rev}:_bots.py", "exec"), module.__dict__)
    return module


def quality(classify: Callable[[str], object], rows: list[tuple[str, str]]) -> dict[str, float]:
    tp = fp = fn = right = 0
    for label, agent in rows:
        verdict = classify(agent)
        flagged = verdict is not None and verdict is not False
        if label == "browser":
            fp += flagged
        elif flagged:
            tp += 1
            right += verdict == label
        else:
            fn += 1
    return {
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "false_pos": fp,
        "missed": fn,
        "category": right / tp if tp else 0.0,
    }


def per_call_us(
    call: Callable[[str], object], agents: list[str], clear: Callable[[], None]
) -> float:
    clear()
    started = time.perf_counter()
    for agent in agents:
        call(agent)
    return (time.perf_counter() - started) / len(agents) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-rev", default="56f3aa5")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print_provenance()
    rows = load_corpus()
    agents = [agent for _, agent in rows]
    rng = random.Random(14)
    weights = [1 / (rank + 1) for rank in range(len(agents))]
    stream = rng.choices(agents, weights=weights, k=STREAM)

    previous = previous_detector(args.baseline_rev)
    detector = CrawlerDetect()
    crawlerdetect_cached = lru_cache(maxsize=4096)(detector.isCrawler)
    candidates: dict[str, tuple[Callable[[str], object], Callable[[str], object], Callable[[], None]]] = {
        "previous": (previous.is_bot, previous.is_bot, previous._classify.cache_clear),
        "crawlerdetect": (detector.isCrawler, crawlerdetect_cached, crawlerdetect_cached.cache_clear),
        "headcount": (_bots.bot_category, _bots.bot_category, _bots.CATEGORY_BY_AGENT.clear),
    }  # fmt: skip

    uncached: dict[str, list[float]] = {name: [] for name in candidates}
    cached: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, (_, with_cache, clear) in candidates.items():
            uncached[name].append(per_call_us(with_cache, agents, clear))
            clear()
            cached[name].append(per_call_us(with_cache, stream, lambda: None))
    first = {name: statistics.median(v) for name, v in uncached.items()}
    hot = {name: statistics.median(v) for name, v in cached.items()}

    print(
        f"corpus: {len(rows)} user agents ({sum(1 for label, _ in rows if label == 'browser')} browsers)"
    )
    print(f"median over {args.rounds} rounds; ratios against previous ({args.baseline_rev})")
    print(f"{'':14} {'precision':>9} {'recall':>7} {'false+':>6} {'missed':>6} {'category':>8}"
          f" {'µs uncached':>11} {'x prev':>6} {'µs cached':>9} {'x prev':>6}")  # fmt: skip
    for name, (plain, _, _) in candidates.items():
        q = quality(plain, rows)
        category = f"{q['category']:.3f}" if name == "headcount" else "-"
        print(
            f"{name:14} {q['precision']:9.4f} {q['recall']:7.4f} {q['false_pos']:6d}"
            f" {q['missed']:6d} {category:>8} {first[name]:11.2f}"
            f" {first[name] / first['previous']:5.1f}x {hot[name]:9.3f}"
            f" {hot[name] / hot['previous']:5.1f}x"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
