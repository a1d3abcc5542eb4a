"""Django integration: an app that owns the Tracker and a middleware that feeds it.

In settings::

    INSTALLED_APPS = [..., "headcount.integrations.django"]
    MIDDLEWARE = ["headcount.integrations.django.HeadcountMiddleware", ...]  # first
    HEADCOUNT = {"ENDPOINT": "https://stats.example.org", "WRITE_TOKEN": "..."}

Keys of ``HEADCOUNT`` are the Tracker option names in upper case; options left out fall
back to the ``HEADCOUNT_*`` environment variables. The middleware works under WSGI and
ASGI, sync and async, and should come first so that its timing covers the others. Under
an ASGI server, wrap the application in ``asgi.py`` so that its lifespan's end sends the
last counts (uvicorn's workers exit without exit hooks)::

    application = HeadcountLifespan(get_asgi_application())
"""

from headcount.integrations.django._lifespan import HeadcountLifespan
from headcount.integrations.django._middleware import HeadcountMiddleware

__all__ = ["HeadcountLifespan", "HeadcountMiddleware"]
