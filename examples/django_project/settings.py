"""Settings of the example project. Headcount options come from HEADCOUNT_* variables."""

import os

DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
# A demo key: a real site reads its own from the environment and never commits it.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
ROOT_URLCONF = "examples.django_project.urls"
WSGI_APPLICATION = "examples.django_project.wsgi.application"
ASGI_APPLICATION = "examples.django_project.asgi.application"

INSTALLED_APPS = [
    "headcount.integrations.django",
    "examples.django_project.site_pages",
]
MIDDLEWARE = [
    # First, so that its timing covers every other middleware.
    "headcount.integrations.django.HeadcountMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# Keys are Tracker option names in upper case; anything left out is read from the
# HEADCOUNT_* environment variables (HEADCOUNT_ENDPOINT, HEADCOUNT_WRITE_TOKEN, ...).
HEADCOUNT: dict[str, object] = {}
if "HEADCOUNT_ENDPOINT" not in os.environ and "HEADCOUNT_ENABLED" not in os.environ:
    HEADCOUNT["ENABLED"] = False
