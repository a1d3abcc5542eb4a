"""The ASGI lifespan for Django, whose own ASGI handler refuses it, so that a server that
stops its workers without exit hooks (uvicorn) does not lose the counts not yet sent."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from django.apps import apps
from django.core.exceptions import AppRegistryNotReady

from headcount.integrations._common import send_last_counts
from headcount.integrations.django.apps import LABEL

if TYPE_CHECKING:
    from headcount.integrations.asgi import ASGIApp, Message, Receive, Scope, Send
    from headcount.integrations.django.apps import HeadcountConfig

__all__ = ["HeadcountLifespan"]

logger = logging.getLogger("headcount.integrations.django")

_APP = "headcount.integrations.django"


class HeadcountLifespan:
    """Wraps Django's ASGI application (``get_asgi_application()``, or a Channels
    ``ProtocolTypeRouter``): every scope goes to it; a lifespan it refuses, as Django's
    own handler does, is answered here. Either way the lifespan's end sends the tracker's
    last counts and ends the visits linked in memory, as the ASGI middleware does for
    Starlette and FastAPI: uvicorn ends a worker stopped by SIGTERM by raising the
    signal again, so Python's exit hooks never run there.

    In ``asgi.py``::

        application = HeadcountLifespan(get_asgi_application())
    """

    def __init__(self, application: ASGIApp) -> None:
        self.application = application
        # Known from the start, so the middleware does not warn, even under a server
        # that runs no lifespan (uvicorn --lifespan off), where nothing more can be done.
        # Built before django.setup(), or without the app: __call__ sees to it.
        with contextlib.suppress(AppRegistryNotReady, LookupError):
            _config().lifespan_wrapped = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.application(scope, receive, send)
            return
        if not apps.is_installed(_APP):
            logger.warning("headcount: HeadcountLifespan needs %r in INSTALLED_APPS", _APP)
            await self.application(scope, receive, send)
            return
        config = _config()
        config.lifespan_wrapped = True
        received = False

        async def watched_receive() -> Message:
            nonlocal received
            received = True
            return await receive()

        async def send_after_flushing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await send_last_counts(config.tracker)
            await send(message)

        try:
            await self.application(scope, watched_receive, send_after_flushing)
            return
        except Exception:
            if received:
                raise  # the app took part in the lifespan and failed: the server says so
        # Refused before reading anything (Django: "can only handle ASGI/HTTP").
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send_last_counts(config.tracker)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _config() -> HeadcountConfig:
    config: HeadcountConfig = apps.get_app_config(LABEL)
    return config
