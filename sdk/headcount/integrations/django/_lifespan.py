"""The ASGI lifespan that Django's own ASGI handler refuses, so a server that stops its
workers without exit hooks (uvicorn) does not lose the counts not yet sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

import anyio.to_thread
from django.apps import apps

from headcount.integrations.django.apps import LABEL

__all__ = ["HeadcountLifespan"]

_NOT_INSTALLED = "HeadcountLifespan needs 'headcount.integrations.django' in INSTALLED_APPS"

Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class HeadcountLifespan:
    """Wraps Django's ASGI application (``get_asgi_application()``): HTTP and websocket
    scopes go to Django untouched; the lifespan, which Django refuses, is answered here,
    and its end sends the tracker's last counts, as the ASGI middleware does for
    Starlette and FastAPI. uvicorn ends a worker stopped by SIGTERM by raising the
    signal again, so Python's exit hooks (the SDK's exit flush among them) never run
    there: without this, a stop loses what was counted since the last send.

    In ``asgi.py``::

        application = HeadcountLifespan(get_asgi_application())
    """

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.application(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not apps.is_installed("headcount.integrations.django"):
                    await send({"type": "lifespan.startup.failed", "message": _NOT_INSTALLED})
                    return
                config: Any = apps.get_app_config(LABEL)
                # The middleware then knows the counts will be sent at the end.
                config.lifespan_served = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                tracker = config.tracker
                # Visits linked in memory end with the process, as at exit.
                tracker._end_visits_in_memory()
                await anyio.to_thread.run_sync(tracker.flush, tracker.settings.shutdown_timeout)
                await send({"type": "lifespan.shutdown.complete"})
                return
