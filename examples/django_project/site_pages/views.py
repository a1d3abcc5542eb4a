from collections.abc import Iterator

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_safe

PEOPLE = {1: "Ada", 2: "Grace", 3: "Edsger"}
ARTICLES = {"hello-world": "Hello, world"}


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "site_pages/home.html")


@require_safe
def about(request: HttpRequest) -> HttpResponse:
    return render(request, "site_pages/about.html")


@require_safe
def people(request: HttpRequest) -> HttpResponse:
    return render(request, "site_pages/people.html", {"people": PEOPLE})


@require_safe
def person(request: HttpRequest, pk: int) -> HttpResponse:
    if pk not in PEOPLE:
        raise Http404("no such person")
    return render(request, "site_pages/person.html", {"pk": pk, "name": PEOPLE[pk]})


def contact(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        name = request.POST.get("name", "")[:40]
        return HttpResponseRedirect(reverse("thanks") + "?" + urlencode({"name": name}))
    return render(request, "site_pages/contact.html")


@require_safe
def thanks(request: HttpRequest) -> HttpResponse:
    return render(request, "site_pages/thanks.html", {"name": request.GET.get("name", "")})


@require_safe
def article(request: HttpRequest, year: str, slug: str) -> HttpResponse:
    if slug not in ARTICLES:
        raise Http404("no such article")
    context = {"year": year, "title": ARTICLES[slug]}
    return render(request, "site_pages/article.html", context)


@require_safe
def report(request: HttpRequest) -> StreamingHttpResponse:
    def rows() -> Iterator[str]:
        yield "id,name\n"
        for pk, name in PEOPLE.items():
            yield f"{pk},{name}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the example's deliberate failure")
