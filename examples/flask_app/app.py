"""A small server-rendered Flask site, counted by Headcount.

Run from the repository root:

    HEADCOUNT_ENDPOINT=http://127.0.0.1:8400 HEADCOUNT_WRITE_TOKEN=... \
        gunicorn -w 2 -c examples/flask_app/gunicorn.conf.py examples.flask_app.app:app

Every Tracker option can be set as a ``HEADCOUNT_<OPTION>`` environment variable (or
app.config key). Without ``HEADCOUNT_ENDPOINT`` the site runs with counting disabled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from flask import Flask, Response, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from headcount.integrations.flask import Headcount

USERS = {1: "Ada", 2: "Grace", 3: "Edsger"}


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    if "HEADCOUNT_ENDPOINT" not in os.environ and "HEADCOUNT_ENABLED" not in os.environ:
        app.config["HEADCOUNT_ENABLED"] = False
    app.config.update(config or {})
    Headcount(app)

    @app.get("/")
    def home() -> str:
        return render_template("home.html")

    @app.get("/about")
    def about() -> str:
        return render_template("about.html")

    @app.get("/users/")
    def users() -> str:
        return render_template("users.html", users=USERS)

    @app.get("/users/<int:id>")
    def user(id: int) -> str:
        if id not in USERS:
            abort(404)
        return render_template("user.html", id=id, name=USERS[id])

    @app.route("/contact", methods=["GET", "POST"])
    def contact() -> ResponseReturnValue:
        if request.method == "POST":
            return redirect(url_for("thanks", name=request.form.get("name", "")[:40]))
        return render_template("contact.html")

    @app.get("/thanks")
    def thanks() -> str:
        return render_template("thanks.html", name=request.args.get("name", ""))

    @app.get("/report.csv")
    def report() -> Response:
        def rows() -> Iterator[str]:
            yield "id,name\n"
            for id, name in USERS.items():
                yield f"{id},{name}\n"

        return Response(rows(), mimetype="text/csv")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("the example's deliberate failure")

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return render_template("404.html"), 404

    return app


app = create_app()
