"""The demo's site: a few pages of a small Flask shop, instrumented with Headcount.

Shipped in the package so that ``headcount-collector demo`` works from any install with
the ``collector`` and ``flask`` extras, not only from a checkout. Run by the demo as
``python -m headcount_collector.demo._site PORT``; every Tracker option comes from the
``HEADCOUNT_*`` environment variables the demo sets. ``examples/`` holds the fuller
example apps (Flask, Django, FastAPI) to copy from.
"""

from __future__ import annotations

import html
import sys

from flask import Flask, Response, abort, redirect, request, url_for
from flask.typing import ResponseReturnValue

from headcount.integrations.flask import Headcount

PEOPLE = {1: "Ada", 2: "Grace", 3: "Edsger"}


def _page(title: str, body: str, status: int = 200) -> Response:
    links = " · ".join(
        f'<a href="{url_for(name)}">{label}</a>'
        for name, label in (("home", "Home"), ("about", "About"), ("people", "People"))
    )
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · Headcount demo</title></head>"
        f'<body><nav>{links} · <a href="{url_for("contact")}">Contact</a></nav>'
        f"<main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(document, status=status, mimetype="text/html")


def create_site() -> Flask:
    site = Flask(__name__)
    Headcount(site)

    @site.get("/")
    def home() -> Response:
        return _page("Home", "<p>A small shop, counted by Headcount.</p>")

    @site.get("/about")
    def about() -> Response:
        return _page("About", "<p>Only coarse counts leave this app.</p>")

    @site.get("/users/")
    def people() -> Response:
        items = "".join(
            f'<li><a href="{url_for("person", id=id)}">{name}</a></li>'
            for id, name in PEOPLE.items()
        )
        return _page("People", f"<ul>{items}</ul>")

    @site.get("/users/<int:id>")
    def person(id: int) -> Response:
        if id not in PEOPLE:
            abort(404)
        return _page(PEOPLE[id], f"<p>Person number {id}.</p>")

    @site.route("/contact", methods=["GET", "POST"])
    def contact() -> ResponseReturnValue:
        if request.method == "POST":
            return redirect(url_for("thanks"), code=303)
        form = '<form method="post"><input name="name"><button>Send</button></form>'
        return _page("Contact", form)

    @site.get("/thanks")
    def thanks() -> Response:
        return _page("Thanks", "<p>We will be in touch.</p>")

    @site.get("/boom")
    def boom() -> Response:
        raise RuntimeError("the demo's deliberate failure, counted as a 5xx")

    @site.errorhandler(404)
    def not_found(error: Exception) -> Response:
        return _page("Not found", "<p>No such page.</p>", status=404)

    return site


if __name__ == "__main__":
    create_site().run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
