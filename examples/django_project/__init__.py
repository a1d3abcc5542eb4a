"""A small Django project instrumented with ``headcount.integrations.django``."""
