"""The Django app whose ``wagtail_hooks`` module Wagtail discovers at start-up."""

from __future__ import annotations

from django.apps import AppConfig

from headcount.integrations.wagtail._routes import route_mode

__all__ = ["HeadcountWagtailConfig"]


class HeadcountWagtailConfig(AppConfig):  # type: ignore[misc]
    name = "headcount.integrations.wagtail"
    label = "headcount_wagtail"
    verbose_name = "Headcount for Wagtail"

    def ready(self) -> None:
        # A misspelt mode stops the process at start, not on the first page served.
        route_mode()
