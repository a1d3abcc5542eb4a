"""The demo's visitors: browsers and bots from many addresses, arriving from search
engines, social sites and newsletters, clicking through the site, posting its form."""

from __future__ import annotations

import contextlib
import random
import threading

import httpx

_REFERRERS = (
    None,
    None,
    "https://www.google.com/search?q=headcount+analytics",
    "https://news.ycombinator.com/item?id=4242",
    "https://duckduckgo.com/",
    "https://mastodon.social/@someone/1234567",
    "https://newsletter.example.org/issues/42?subscriber=ann@example.com",
)
_CAMPAIGNS = (
    "",
    "",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=winter-launch",
    "?utm_source=mastodon&utm_medium=social",
    "?utm_campaign=Black%20Friday!&email=bob@example.com",  # not a slug: dropped
)
_BROWSERS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5",
)
_BOTS = ("Googlebot/2.1 (+http://www.google.com/bot.html)", "curl/8.5.0")


def _browser_headers(agent: str, address: str) -> dict[str, str]:
    """What a browser sends with a top-level navigation (the app sees these headers)."""
    return {
        "User-Agent": agent,
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "en-GB,en;q=0.7",
        "Sec-Fetch-Dest": "document",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-User": "?1",
        "Upgrade-Insecure-Requests": "1",
        "X-Forwarded-For": address,
    }


def _one_visit(client: httpx.Client, rng: random.Random) -> None:
    agent = rng.choice(_BOTS) if rng.random() < 0.1 else rng.choice(_BROWSERS)
    # Each simulated visitor comes through the (trusted) local proxy from its own address
    # in a documentation range; the app links its pageviews into a visit in memory only.
    address = f"198.51.100.{rng.randint(1, 254)}"
    headers = _browser_headers(agent, address)
    referrer = rng.choice(_REFERRERS)
    if referrer:
        headers["Referer"] = referrer
        headers["Sec-Fetch-Site"] = "cross-site"
    else:
        headers["Sec-Fetch-Site"] = "none"  # typed or bookmarked
    path = rng.choice(("/", "/", "/about", "/users/", f"/users/{rng.randint(1, 3)}"))
    current = str(client.base_url).rstrip("/") + path
    client.get(path + rng.choice(_CAMPAIGNS), headers=headers)
    for _ in range(rng.randint(0, 3)):
        # A click on a link of the page just seen: same origin, that page as referrer
        # (browsers send the path but no query by default: strict-origin-when-cross-origin
        # keeps the full URL for same-origin requests).
        headers["Referer"] = current
        headers["Sec-Fetch-Site"] = "same-origin"
        next_path = rng.choice(
            (
                "/about",
                "/users/",
                f"/users/{rng.randint(1, 3)}",
                "/contact",
                "/nope/x",
                f"/users/{rng.randint(100, 999999)}",
            )
        )
        client.get(next_path, headers=headers)
        current = str(client.base_url).rstrip("/") + next_path
    headers["Referer"] = current
    headers["Sec-Fetch-Site"] = "same-origin"
    roll = rng.random()
    if roll < 0.15:
        client.post("/contact", data={"name": "Ann"}, headers=headers)
    elif roll < 0.2:
        client.get("/boom", headers=headers)


def drive_traffic(app_url: str, stop: threading.Event, rate: float = 20.0, seed: int = 7) -> int:
    """Browse the example like a crowd of visitors until ``stop`` is set; returns visits."""
    rng = random.Random(seed)
    visits = 0
    with httpx.Client(base_url=app_url, timeout=5, follow_redirects=True) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                _one_visit(client, rng)
                visits += 1
            stop.wait(1 / rate)
    return visits
