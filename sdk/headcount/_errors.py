"""Exceptions and warnings the SDK raises or emits at its public boundary."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConfigurationTypeError",
    "ConfigurationWarning",
    "HeadcountError",
]


class HeadcountError(Exception):
    """Base class of every exception Headcount raises.

    Recording never raises: only constructing a ``Tracker`` with bad arguments, or
    calling ``set_route`` with something that is not a request and a string, does.
    """


class ConfigurationError(HeadcountError, ValueError):
    """An argument passed to ``Tracker`` (or ``Tracker.from_options``) is invalid.

    It is a ``ValueError``; an argument of the wrong type raises the subclass that is
    also a ``TypeError``, so either built-in can be caught.
    """


class ConfigurationTypeError(ConfigurationError, TypeError):
    """An option or argument was given a value of the wrong type."""


class ConfigurationWarning(UserWarning):
    """A ``HEADCOUNT_*`` environment variable was invalid and its default was used instead."""
