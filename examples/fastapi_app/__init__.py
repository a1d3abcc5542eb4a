"""A small FastAPI site instrumented with ``headcount.integrations.asgi``."""
