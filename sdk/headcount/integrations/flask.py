"""Flask extension: counts every request, with the matched rule as the route template.

    from headcount.integrations.flask import Headcount
    headcount = Headcount(app)          # or: headcount = Headcount(); headcount.init_app(app)

Options come from ``app.config`` keys ``HEADCOUNT_<OPTION>`` (``HEADCOUNT_ENDPOINT``,
``HEADCOUNT_WRITE_TOKEN``, ``HEADCOUNT_FLUSH_INTERVAL``, ...), then from environment
variables of the same names. Pass ``tracker=`` to share a Tracker you built yourself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app, request

from headcount._page_route import set_app_route
from headcount.integrations._common import ROUTE_KEY, tracker_from_options
from headcount.integrations.wsgi import HeadcountMiddleware

if TYPE_CHECKING:
    from headcount import Tracker

__all__ = ["Headcount"]

CONFIG_PREFIX = "HEADCOUNT_"
EXTENSION_KEY = "headcount"


class Headcount:
    """Instruments one or more Flask apps; each app gets one Tracker, created at init."""

    def __init__(self, app: Flask | None = None, *, tracker: Tracker | None = None) -> None:
        self._tracker = tracker
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("Headcount is already initialised on this app")
        tracker = self._tracker
        if tracker is None:
            options = {
                key[len(CONFIG_PREFIX) :]: value
                for key, value in app.config.items()
                if key.startswith(CONFIG_PREFIX)
            }
            tracker = tracker_from_options(options)
        app.extensions[EXTENSION_KEY] = tracker
        app.teardown_request(_remember_rule)
        # Wrapping wsgi_app (not the app object) keeps `app` a Flask instance for
        # servers and tools, and runs inside any middleware the app added before,
        # such as ProxyFix, so REMOTE_ADDR is the one the app trusts.
        app.wsgi_app = HeadcountMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, tracker, tell_unrouted=False
        )

    @property
    def tracker(self) -> Tracker:
        """The Tracker given at construction, else the current app's."""
        if self._tracker is not None:
            return self._tracker
        tracker: Tracker = current_app.extensions[EXTENSION_KEY]
        return tracker


def _remember_rule(error: BaseException | None) -> None:
    # Teardown runs for every request, errors included, and is the last moment the
    # request object is reachable: Flask drops it from the environ when the context
    # ends, before the middleware finishes timing. No rule (404, 405) means unmatched.
    # A route the view set itself (headcount.set_route) wins over the rule.
    rule = request.url_rule
    if rule is not None and ROUTE_KEY not in request.environ:
        set_app_route(request, rule.rule)
