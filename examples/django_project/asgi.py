"""ASGI entry point: ``uvicorn examples.django_project.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

from headcount.integrations.django import HeadcountLifespan

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
# The lifespan's end sends the last counts: uvicorn's workers exit without exit hooks.
application = HeadcountLifespan(get_asgi_application())
