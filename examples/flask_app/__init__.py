"""A small Flask site instrumented with ``headcount.integrations.flask``."""
