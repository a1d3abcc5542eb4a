"""A small server-rendered FastAPI site with a mounted sub-app, counted by Headcount.

Run from the repository root:

    HEADCOUNT_ENDPOINT=http://127.0.0.1:8400 HEADCOUNT_WRITE_TOKEN=... \
        uvicorn examples.fastapi_app.app:app

Every Tracker option can be set as a ``HEADCOUNT_<OPTION>`` environment variable.
Without ``HEADCOUNT_ENDPOINT`` the site runs with counting disabled. The lifespan
handler sends what is left when uvicorn shuts down.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.templating import Jinja2Templates

from headcount import Tracker
from headcount.integrations.asgi import HeadcountMiddleware

USERS = {1: "Ada", 2: "Grace", 3: "Edsger"}
ARTICLES = {"getting-started": "Getting started", "privacy": "What we count"}
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _tracker_from_environment() -> Tracker:
    if "HEADCOUNT_ENDPOINT" not in os.environ and "HEADCOUNT_ENABLED" not in os.environ:
        return Tracker(enabled=False)
    return Tracker()  # every option from HEADCOUNT_* variables


def _help_app() -> FastAPI:
    help_site = FastAPI(openapi_url=None)

    @help_site.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "help.html", {"articles": ARTICLES})

    @help_site.get("/articles/{slug}", response_class=HTMLResponse)
    def article(request: Request, slug: str) -> HTMLResponse:
        if slug not in ARTICLES:
            raise HTTPException(404)
        return templates.TemplateResponse(
            request, "article.html", {"title": ARTICLES[slug], "slug": slug}
        )

    return help_site


def create_app(tracker: Tracker | None = None) -> FastAPI:
    tracker = tracker or _tracker_from_environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # shutdown() blocks while it sends what is left; keep the event loop free.
        await asyncio.to_thread(tracker.shutdown, 2.0)

    app = FastAPI(lifespan=lifespan, openapi_url=None)
    app.add_middleware(HeadcountMiddleware, tracker=tracker)
    app.state.tracker = tracker

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        if exc.status_code == 404:
            return templates.TemplateResponse(request, "404.html", status_code=404)
        return HTMLResponse(str(exc.detail), status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "home.html")

    @app.get("/about", response_class=HTMLResponse)
    def about(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "about.html")

    people = APIRouter()

    @people.get("/", response_class=HTMLResponse)
    def users(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "users.html", {"users": USERS})

    @people.get("/{id:int}", response_class=HTMLResponse)
    def user(request: Request, id: int) -> HTMLResponse:
        if id not in USERS:
            raise HTTPException(404)
        return templates.TemplateResponse(request, "user.html", {"id": id, "name": USERS[id]})

    app.include_router(people, prefix="/users")

    @app.get("/contact", response_class=HTMLResponse)
    def contact_form(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "contact.html")

    @app.post("/contact")
    async def contact_send(request: Request) -> RedirectResponse:
        # Parsed by hand: FastAPI's Form() would need python-multipart for one field.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name = form.get("name", [""])[0][:40]
        url = request.url_for("thanks").include_query_params(name=name)
        return RedirectResponse(str(url), status_code=303)

    @app.get("/thanks", response_class=HTMLResponse)
    def thanks(request: Request, name: str = "") -> HTMLResponse:
        return templates.TemplateResponse(request, "thanks.html", {"name": name})

    @app.get("/report.csv")
    def report() -> StreamingResponse:
        def rows() -> Iterator[str]:
            yield "id,name\n"
            for id, name in USERS.items():
                yield f"{id},{name}\n"

        return StreamingResponse(rows(), media_type="text/csv")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("the example's deliberate failure")

    app.mount("/help", _help_app())
    return app


app = create_app()
