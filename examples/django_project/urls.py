"""URLs of the example project: path() with include(), and one re_path()."""

from django.urls import include, path

urlpatterns = [
    path("", include("examples.django_project.site_pages.urls")),
    path("people/", include("examples.django_project.site_pages.people_urls")),
]
