from django.urls import path

from examples.django_project.site_pages import views

urlpatterns = [
    path("", views.people, name="people"),
    path("<int:pk>/", views.person, name="person"),
]
