"""Bot detection from the user agent, cheap enough for every request.

A precompiled regex over tokens that self-identifying crawlers, monitors, link
previewers, AI agents and HTTP libraries put in their user agents, plus "no (or almost
no) user agent at all". It cannot catch bots that impersonate browsers; nothing that
only sees a user agent can. A plain alternation of ~70 tokens costs ~10 µs per call in
``re`` (it retries every alternative at every position), so the tokens are compiled
into a prefix trie, which ``re`` scans in ~3 µs; a bounded LRU cache keyed by the exact
string then makes the common case a ~0.1 µs hit, since a site sees the same few hundred
user agents over and over.

``crawlerdetect`` (the ``headcount[bots]`` extra) knows more patterns but builds in
~0.2 ms and costs far more per uncached call than the whole budget of recording a
request, so it is not used on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["BOT_TOKENS", "is_bot"]

# Lowercase substrings. "bot" also covers googlebot, bingbot, gptbot, claudebot, …
BOT_TOKENS: tuple[str, ...] = (
    # Self-descriptions.
    "bot", "crawl", "spider", "slurp", "scrape", "archiver", "fetcher", "indexer", "scanner",
    # HTTP libraries and command-line clients.
    "curl", "wget", "python-requests", "python-urllib", "python/", "httpx", "aiohttp",
    "go-http-client", "java/", "okhttp", "libwww", "lwp-", "guzzle", "axios", "node-fetch",
    "undici", "ruby", "scrapy", "httpie", "winhttp",
    # Headless and automated browsers, audits and uptime monitors.
    "headless", "lighthouse", "phantomjs", "selenium", "puppeteer", "playwright", "pagespeed",
    "gtmetrix", "pingdom", "uptime", "monitor", "statuscake", "site24x7", "datadog",
    "check_http",
    # Link previewers and AI agents that do not say "bot".
    "facebookexternalhit", "meta-externalagent", "embedly", "whatsapp", "preview",
    "chatgpt", "claude", "anthropic", "perplexity", "cohere-ai", "ia_archiver",
    # Security scanners.
    "nmap", "masscan", "zgrab", "nikto", "sqlmap", "nuclei", "censys",
)  # fmt: skip

# Shorter than any browser's user agent: a hand-rolled client or a placeholder.
_MIN_BROWSER_UA = 8
# Tokens sit near the start of real user agents; the tail of a 10 KB header is not read.
_SCAN_CHARS = 512


_Trie = dict[str, "_Trie"]


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, factored by common prefixes."""
    root: _Trie = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: _Trie) -> str:
        if "" in node:
            return ""  # a shorter word already matches; longer ones add nothing
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return pattern(root)


_BOT = re.compile(_trie_pattern(BOT_TOKENS))


@lru_cache(maxsize=4096)
def _classify(user_agent: str) -> bool:
    if len(user_agent.strip()) < _MIN_BROWSER_UA:
        return True
    return _BOT.search(user_agent.lower()) is not None


def is_bot(user_agent: str | None) -> bool:
    """True when the user agent identifies a bot or is missing.

    The user agent is only held in this process's bounded cache, never stored or sent.
    """
    if not user_agent:
        return True
    if len(user_agent) > _SCAN_CHARS:
        # Bounds the cache's memory whatever clients send.
        user_agent = user_agent[:_SCAN_CHARS]
    return _classify(user_agent)
