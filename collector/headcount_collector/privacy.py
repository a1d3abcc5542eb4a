"""The human-readable privacy page and each site's declaration, from the live configuration.

Both are generated from the wire schema and the site file, the same declarations the
validator enforces, so what the page promises is what the code does.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from headcount import wire
from headcount_collector.config import Site

__all__ = [
    "NEVER_COLLECTED",
    "PAGE_CSP",
    "csv_headers",
    "guarantee_text",
    "render_common_page",
    "render_not_found",
    "render_site_page",
    "site_declaration",
]

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


def site_declaration(
    site: Site,
    visit_modes: dict[str, int] | None = None,
    stated: dict[str, object] | None = None,
) -> dict[str, object]:
    """What this site collects, for ``/v1/schema`` with the site's read token; ``stated``:
    the guarantee over everything released (``query.stated_guarantee``), when known."""
    return {
        "id": site.id,
        "timezone": site.timezone.key,
        "privacy": stated if stated is not None else site.policy.describe(),
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


def guarantee_text(site: Site) -> list[str]:
    """The site's release guarantee in plain words, from its live configuration."""
    policy = site.policy
    if not policy.noise:
        return [
            "<strong>This site has opted out of noise: its numbers are exact.</strong> "
            f"A count below {site.k} is withheld within each answer, but comparing "
            "different answers (a day minus its hours, a range with and without a filter) "
            "can reveal a withheld count. Whoever holds this site's read token can see "
            "whether a single visit happened."
        ]
    request = policy.budgets["request"]
    event = policy.budgets["event"]
    grace = policy.seal_grace_seconds // 3600
    return [
        "Numbers are released only once their hour or day is over and a further "
        f"{grace} hour{'s' if grace != 1 else ''} have passed (it is then <em>sealed</em>). "
        "At that moment each count gets random noise, drawn once from the operating "
        "system's randomness and stored; it never changes afterwards, so asking again, "
        "averaging answers or subtracting one answer from another reveals nothing new.",
        f"The noise is a whole number with a typical size of about "
        f"{float(request.variance) ** 0.5:.0f}. A count is shown only when its noisy value "
        f"reaches {request.threshold} ({event.threshold} for custom events), so a page, "
        "referrer or campaign seen by one visitor does not appear at all.",
        "Formally: for any single request to the site (its request record, and its "
        "pageview and its effect on its visit, or its bot record), everything ever "
        "released from the site's request, pageview, visit and bot counts together "
        f"satisfies ({policy.epsilon:g}, {policy.delta:g})-differential privacy. Each "
        "custom event is protected the same way, separately: a request that also fires "
        "custom events has those added to its privacy loss. Whether or not your request "
        "was counted, every published number would have been about as likely (within a "
        f"factor of e^{policy.epsilon:g}, except with probability {policy.delta:g}): "
        "someone holding every released number could guess whether this one request was "
        f"counted with at most about {policy.best_guess_accuracy():.0%} accuracy, where a "
        "coin toss has 50%.",
        "Limits: a visit of several page loads is protected as a group, more weakly the "
        "longer it is; the guarantee assumes the app's visit table does not overflow and "
        "that nobody knows where the caps on distinct pages and referrers per hour begin "
        "to fold into (other), which is kept secret; the noise does not hide large "
        "groups, which is the point of analytics.",
    ]


def _earlier_parameters_html(stated: dict[str, object] | None) -> str:
    """Time sealed under parameters other than today's, which the guarantee above does
    not cover as stated."""
    if stated is None:
        return ""
    entries = stated.get("sealed_under")
    if not isinstance(entries, list) or not entries:
        return ""
    spans = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        when = f"from {escape(str(entry['sealed_from']))} to {escape(str(entry['sealed_until']))}"
        if entry.get("epsilon") is None:
            spans.append(f"parameters not recorded (sealed before schema version 9) {when}")
        else:
            spans.append(f"({entry['epsilon']:g}, {entry['delta']:g}) {when}")
    return (
        "<li><strong>The parameters changed.</strong> Numbers already released keep the "
        "noise they were sealed with: " + "; ".join(spans) + ". For everything released, "
        f"the guarantee is ({stated['epsilon']:g}, {stated['delta']:g})-differential "
        "privacy, the weakest of these; each answer states the weakest for the time it "
        "covers.</li>"
    )


def _site_html(site: Site, modes: dict[str, int], stated: dict[str, object] | None) -> str:
    guarantee = "".join(f"<li>{line}</li>" for line in guarantee_text(site))
    guarantee += _earlier_parameters_html(stated)
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
        f"{guarantee}{_modes_html(modes)}</ul>"
        f"<p>Custom events this site accepts (anything else is rejected):</p><ul>{events}</ul>"
        "</section>"
    )


_STYLE = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}"
# The pages' one inline style, allowed by its hash: nothing else runs or loads, so text
# that slipped through escaping could still not script or restyle the page.
PAGE_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_STYLE}</style>
</head><body>
{body}
</body></html>
"""


def _common_html() -> str:
    never = "".join(f"<li>{escape(w)}: {escape(why)}</li>" for w, why in NEVER_COLLECTED)
    latency = ", ".join(wire.LATENCY_LABELS)
    duration = ", ".join(wire.DURATION_LABELS)
    pages = ", ".join(wire.PAGES_LABELS)
    return f"""<h2>What is collected, and how coarsely</h2>
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
are deliberately not offered: counting them needs linking across visits.</p>"""


def render_common_page() -> str:
    """``/privacy``: what every site on this collector shares, naming none of them."""
    return _page(
        "Headcount: what is collected",
        f"""<h1>What this analytics collects</h1>
<p>Sites measured with Headcount count requests inside their own app process and send
only coarse, hourly counts. This page is generated from the collector's live
configuration and the same schema its validator enforces. Each site's own page, at
<code>/privacy/SITE</code>, states its retention, its release guarantee and its custom
events.</p>
{_common_html()}""",
    )


def render_site_page(
    site: Site,
    visit_modes: dict[str, int] | None = None,
    stated: dict[str, object] | None = None,
) -> str:
    """``/privacy/{site}``: everything above plus this site's own guarantee, live."""
    return _page(
        f"Headcount: what {site.id} collects",
        f"""<h1>What this analytics collects</h1>
<p>This site is measured with Headcount. The app counts requests inside its own process and
sends only coarse, hourly counts. This page is generated from the collector's live
configuration and the same schema its validator enforces.</p>
{_common_html()}
<h2>Retention and released numbers</h2>
{_site_html(site, visit_modes or {}, stated)}""",
    )


def render_not_found() -> str:
    return _page("Headcount: no such site", "<h1>No such site on this collector</h1>")


def csv_headers(site: Site, response: dict[str, object]) -> dict[str, str]:
    """The guarantee of a CSV answer, which has no room for it in its rows."""
    policy = site.policy
    if not policy.noise:
        return {
            "X-Headcount-Mode": "exact",
            "X-Headcount-K": str(site.k),
            "X-Headcount-Withheld": str(response.get("withheld", 0)),
        }
    sealed = response.get("sealed_until")
    hour = sealed.get("hour") if isinstance(sealed, dict) else None
    # The answer's own statement: after a change of parameters, the weakest it covers.
    stated = response.get("privacy")
    epsilon, delta = policy.epsilon, policy.delta
    if isinstance(stated, dict):
        epsilon, delta = stated.get("epsilon", epsilon), stated.get("delta", delta)
    return {
        "X-Headcount-Mode": "sealed-noise",
        "X-Headcount-Epsilon": f"{epsilon:g}",
        "X-Headcount-Delta": f"{delta:g}",
        "X-Headcount-Unit": "request; custom event",
        "X-Headcount-Sealed-Until": str(hour or "none"),
    }
