"""The search page: GET / and its assets under /page/, plain HTML, CSS and ES modules from service/page/, served
by the service itself so that nothing leaves the machine and nothing is built at run time. The page is open to
everyone (it holds no data); what it asks the API for is guarded like any other request."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

PAGE = Path(__file__).parent / "page"


def install(app: FastAPI) -> None:
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/page", StaticFiles(directory=PAGE), name="page")
