"""The Django app that creates the process's Tracker once, from ``settings.HEADCOUNT``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from headcount.integrations._common import tracker_from_options

if TYPE_CHECKING:
    from headcount import Tracker

__all__ = ["HeadcountConfig"]

LABEL = "headcount"


class HeadcountConfig(AppConfig):  # type: ignore[misc]
    name = "headcount.integrations.django"
    label = LABEL
    verbose_name = "Headcount"

    tracker: Tracker

    def ready(self) -> None:
        options: Any = getattr(settings, "HEADCOUNT", {})
        if not isinstance(options, dict):
            raise ImproperlyConfigured("settings.HEADCOUNT must be a dict of Tracker options")
        self.tracker = tracker_from_options(options)
