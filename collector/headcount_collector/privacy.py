"""The human-readable privacy page and each site's declaration, from the live configuration.

Both are generated from the wire schema and the site file, the same declarations the
validator enforces, so what the page promises is what the code does.
"""

from __future__ import annotations

from html import escape

from headcount import wire
from headcount_collector.config import Site

__all__ = ["NEVER_COLLECTED", "render_page", "site_declaration"]

NEVER_COLLECTED = (
    ("IP addresses", "the collector needs none, ignores proxy headers and logs none"),
    ("user agents", "used inside the app only to recognise bots, then dropped"),
    ("cookies and any browser storage", "Headcount never reads or sets them"),
    ("query strings", "only utm_source, utm_medium and utm_campaign slugs are kept"),
    ("full URLs and paths", "only route templates such as /users/{id}"),
    ("timestamps finer than an hour", "every count is filed under its UTC hour"),
    ("identifiers of any visit or person", "nothing links two requests once they leave the app"),
)


VISIT_MODES = {
    "off": "visits are off: nothing links one pageview to another, even in memory",
    "memory": (
        "visits are linked only in each app process's memory, by a keyed hash whose key "
        "is random and replaced every 24 hours"
    ),
    "redis": (
        "visits are linked in the app's own Redis, by a keyed hash whose key is shared "
        "by its workers and expires after 24 hours; entries expire after the idle gap"
    ),
}


def site_declaration(site: Site, visit_modes: dict[str, int] | None = None) -> dict[str, object]:
    """What this site collects, for ``/v1/schema`` with the site's read token."""
    return {
        "id": site.id,
        "timezone": site.timezone.key,
        "k": site.k,
        "suppression": site.k > 1,
        "retention": {"hourly_days": site.hourly_days, "keep_days": site.keep_days},
        "visits_modes_declared": sorted(visit_modes or {}),
        "events": [
            {"name": event.name, "props": {p: sorted(v) for p, v in sorted(event.props.items())}}
            for event in site.events.values()
        ],
    }


def _kinds_html() -> str:
    doc = wire.schema_document()
    items = []
    kinds = doc["record_kinds"]
    assert isinstance(kinds, dict)
    for kind, info in kinds.items():
        fields = ", ".join(escape(f["name"]) for f in info["fields"] if f["name"] not in ("kind",))
        items.append(
            f"<li><strong>{escape(kind)}</strong>: {escape(info['description'])} "
            f"Fields: {fields}.</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def _modes_html(modes: dict[str, int]) -> str:
    if not modes:
        return "<li>No sender of this site has declared its visits mode yet.</li>"
    return "".join(
        f"<li>Declared by this site's senders: <strong>{escape(mode)}</strong>: "
        f"{escape(VISIT_MODES.get(mode, 'unknown mode'))}.</li>"
        for mode in sorted(modes)
    )


def _site_html(site: Site, modes: dict[str, int]) -> str:
    if site.k > 1:
        suppression = (
            f"Any released count below <strong>{site.k}</strong> is withheld and folded "
            "into an (other) row together with at least one larger cell, so that no "
            "withheld count can be recovered from the rows, totals or their differences "
            "in one response. A time bucket whose whole total is below "
            f"{site.k} releases nothing and looks exactly like an empty one."
        )
    else:
        suppression = "<strong>Suppression is turned off (k = 1)</strong>: every count is released."
    events = (
        "".join(
            f"<li>{escape(e.name)}"
            + (
                ": "
                + "; ".join(
                    f"{escape(p)} = {', '.join(escape(v) for v in sorted(vals))}"
                    for p, vals in sorted(e.props.items())
                )
                if e.props
                else ""
            )
            + "</li>"
            for e in site.events.values()
        )
        or "<li>none</li>"
    )
    return (
        f"<section><h2>Site {escape(site.id)}</h2><ul>"
        f"<li>Hourly counts are kept for {site.hourly_days} days, then rolled up into "
        f"daily counts (days in {escape(site.timezone.key)}) and the hourly rows deleted.</li>"
        f"<li>Daily counts are deleted after {site.keep_days} days.</li>"
        f"<li>{suppression}</li>{_modes_html(modes)}</ul>"
        f"<p>Custom events this site accepts (anything else is rejected):</p><ul>{events}</ul>"
        "</section>"
    )


_STYLE = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}"


def render_page(sites: list[Site], visit_modes: dict[str, dict[str, int]] | None = None) -> str:
    modes = visit_modes or {}
    never = "".join(f"<li>{escape(w)}: {escape(why)}</li>" for w, why in NEVER_COLLECTED)
    latency = ", ".join(wire.LATENCY_LABELS)
    duration = ", ".join(wire.DURATION_LABELS)
    pages = ", ".join(wire.PAGES_LABELS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Headcount: what is collected</title>
<style>{_STYLE}</style>
</head><body>
<h1>What this analytics collects</h1>
<p>This site is measured with Headcount. The app counts requests inside its own process and
sends only coarse, hourly counts. This page is generated from the collector's live
configuration and the same schema its validator enforces.</p>
<h2>What is collected, and how coarsely</h2>
{_kinds_html()}
<p>Times: the UTC hour only. Request latency ranges: {escape(latency)}. Visit durations:
{escape(duration)}. Pages per visit: {escape(pages)}. Referrers: the domain only, or
(direct), (internal), (other). Routes: templates such as /users/{{id}}; anything that looks
like an identifier is rejected.</p>
<h2>What is never collected</h2>
<ul>{never}</ul>
<h2>Visits</h2>
<p>When an app enables visits, the app links one browser's pageviews only in its own memory
(or its own Redis), through a keyed hash whose key is random and replaced every 24 hours,
for no longer than the visit lasts (30 minutes idle by default). Only the finished visit's
range labels are sent. With visits turned off nothing is linked at all. Unique visitors
are deliberately not offered: counting them needs linking across visits.</p>
<h2>Retention and small counts, per site</h2>
{"".join(_site_html(site, modes.get(site.id, {})) for site in sites)}
<h2>What suppression does not protect against</h2>
<p>Suppression protects each response on its own. It cannot close every gap across
different queries: for example, a day's total minus the visible hours of that day, or the
same range asked with and without a filter, can reveal a count that one response withheld.
Anyone holding a read token can make such queries. Treat read tokens as sensitive; adding
calibrated noise to sealed hourly counts is planned to close this gap.</p>
</body></html>
"""
