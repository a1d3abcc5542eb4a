"""ASGI entry point: ``uvicorn examples.django_project.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
django_application = get_asgi_application()

# After Django is set up: the lifespan's end sends the last counts (uvicorn's workers
# exit without running exit hooks).
from headcount.integrations.django import HeadcountLifespan  # noqa: E402

application = HeadcountLifespan(django_application)
