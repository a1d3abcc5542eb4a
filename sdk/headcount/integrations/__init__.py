"""Framework integrations: thin adapters that describe each finished request to a Tracker.

Each adapter only copies raw framework values into a ``headcount.RequestInfo``;
all coarsening happens in ``Tracker.record_request``. Import the one you need:

- ``headcount.integrations.wsgi.HeadcountMiddleware`` for any WSGI app,
- ``headcount.integrations.asgi.HeadcountMiddleware`` for any ASGI app (Starlette, FastAPI),
- ``headcount.integrations.flask.Headcount`` for Flask,
- ``headcount.integrations.django.HeadcountMiddleware`` for Django.
"""

__all__: list[str] = []
