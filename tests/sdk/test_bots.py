"""Bot detection and categories, measured on the labelled corpus of real user agents.

``tests/data/user_agents.tsv`` is built by ``bench/bot_corpus.py`` from maintained lists
on PyPI (crawlers by kind, browsers by share of traffic); bench/bots.py prints the same
figures for every candidate detector.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest

from headcount import wire
from headcount._bots import SPECIFICITY, bot_category, is_bot

CORPUS = Path(__file__).resolve().parents[1] / "data" / "user_agents.tsv"


def corpus() -> list[tuple[str, str]]:
    rows = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, _source, agent = line.split("\t")
            rows.append((label, agent))
    return rows


def test_the_corpus_covers_browsers_and_every_category() -> None:
    labels = Counter(label for label, _ in corpus())
    assert labels["browser"] >= 500
    for category in wire.BOT_CATEGORIES:
        assert labels[category] >= 50, category


def test_precision_and_recall_on_the_corpus() -> None:
    found: Counter[tuple[bool, bool]] = Counter()
    for label, agent in corpus():
        found[(label != "browser", is_bot(agent))] += 1
    true_positive = found[(True, True)]
    precision = true_positive / (true_positive + found[(False, True)])
    recall = true_positive / (true_positive + found[(True, False)])
    # The figures of docs/benchmarks.md, less a margin for corpus updates.
    assert precision >= 0.995, precision
    assert recall >= 0.97, recall


def test_categories_on_the_corpus() -> None:
    right = total = 0
    for label, agent in corpus():
        if label == "browser":
            continue
        category = bot_category(agent)
        if category is not None:
            total += 1
            right += category == label
    assert right / total >= 0.8, right / total


@pytest.mark.parametrize(
    ("agent", "category"),
    [
        # Missed before (issue 14): counted as people.
        ("Mozilla/5.0 (compatible; Yeti/1.1; +http://naver.me/bot)", "search"),
        ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
         "(KHTML, like Gecko) Chrome/131.0.6778.204 Mobile Safari/537.36 "
         "(compatible; Google-InspectionTool/1.0;)", "search"),
        ("http.rb/5.2.0 (Mastodon/4.3.2; +https://mastodon.social/) Bot", "social"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "search"),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
         "+https://openai.com/gptbot)", "ai"),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
         "+claudebot@anthropic.com)", "ai"),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Claude-SearchBot/1.0; "
         "+https://www.anthropic.com)", "ai"),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "social"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "social"),
        ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "monitor"),
        ("Mozilla/5.0 (Linux; Android 11) Chrome-Lighthouse", "monitor"),
        ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "other"),
        ("python-requests/2.32.3", "other"),
        ("Werkzeug/3.1.3", "other"),
        ("", "other"),
        (None, "other"),
        ("x", "other"),
        # People.
        ("Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.6099.144 Mobile Safari/537.36", None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/456.0.0.36.107]", None),
        ("Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)", None),
        ("w3m/0.5.3+git20230121", None),
        # In-app browsers and apps whose names are also those of bots' operators.
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.0.0 Safari/537.36 Valve Steam GameOverlay/1700000000", None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]", None),
        ("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.0.0 YaBrowser/24.1 YandexSearch/24.1 Mobile Safari/537.36", None),
    ],
)  # fmt: skip
def test_known_agents(agent: str | None, category: str | None) -> None:
    assert bot_category(agent) == category


def test_specificity_orders_exactly_the_wire_categories() -> None:
    assert sorted(SPECIFICITY) == sorted(wire.BOT_CATEGORIES)


def test_a_bot_record_from_an_older_sender_is_other() -> None:
    record = msgspec.json.decode(b'{"kind":"bot","hour":3600,"n":2}', type=wire.Record)
    assert record == wire.Bot(hour=3600, n=2, category="other")


def test_a_bot_record_refuses_anything_but_a_category() -> None:
    with pytest.raises(msgspec.ValidationError, match="category"):
        msgspec.json.decode(
            b'{"kind":"bot","hour":3600,"n":1,"category":"Googlebot/2.1"}', type=wire.Record
        )
