from django.urls import path, re_path

from examples.django_project.site_pages import views

urlpatterns = [
    path("", views.home, name="home"),
    path("about/", views.about, name="about"),
    path("contact/", views.contact, name="contact"),
    path("thanks/", views.thanks, name="thanks"),
    path("report.csv", views.report, name="report"),
    path("boom/", views.boom, name="boom"),
    re_path(r"^articles/(?P<year>[0-9]{4})/(?P<slug>[-\w]+)/$", views.article, name="article"),
]
