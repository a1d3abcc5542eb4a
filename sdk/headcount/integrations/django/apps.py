"""The Django app that creates the process's Tracker once, from ``settings.HEADCOUNT``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from headcount.integrations._common import tracker_from_options

if TYPE_CHECKING:
    from headcount import Tracker

__all__ = ["HeadcountConfig", "middleware_placement"]

LABEL = "headcount"


class HeadcountConfig(AppConfig):  # type: ignore[misc]
    name = "headcount.integrations.django"
    label = LABEL
    verbose_name = "Headcount"

    tracker: Tracker
    # Set by HeadcountLifespan: the lifespan's end sends the last counts under ASGI.
    lifespan_wrapped = False

    def ready(self) -> None:
        options: Any = getattr(settings, "HEADCOUNT", {})
        if not isinstance(options, dict):
            raise ImproperlyConfigured("settings.HEADCOUNT must be a dict of Tracker options")
        self.tracker = tracker_from_options(options)
        checks.register(middleware_placement, checks.Tags.compatibility)


MIDDLEWARE_PATH = "headcount.integrations.django.HeadcountMiddleware"


def middleware_placement(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check`` (and every ``runserver``): the app installed without its
    middleware counts nothing, and the middleware below others misses what they answer."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    ours = [_is_ours(entry) for entry in middleware]
    if not any(ours):
        return [
            checks.Warning(
                "headcount.integrations.django is installed but its middleware is not in "
                "MIDDLEWARE, so no request is counted",
                hint=f'Add "{MIDDLEWARE_PATH}" as the first entry of MIDDLEWARE.',
                id="headcount.W001",
            )
        ]
    if not ours[0]:
        return [
            checks.Warning(
                "HeadcountMiddleware is not the first entry of MIDDLEWARE: requests that the "
                f"middleware above it answers ({middleware[0]}, ...) are neither counted "
                "nor timed",
                hint="Move it to the top of MIDDLEWARE.",
                id="headcount.W002",
            )
        ]
    return []


def _is_ours(entry: object) -> bool:
    """The middleware under any import path, or a subclass of it."""
    if entry == MIDDLEWARE_PATH:
        return True
    from django.utils.module_loading import import_string

    from headcount.integrations.django._middleware import HeadcountMiddleware

    try:
        found = import_string(str(entry))
    except ImportError:
        return False  # Django's own checks report an entry that cannot be imported
    return isinstance(found, type) and issubclass(found, HeadcountMiddleware)
