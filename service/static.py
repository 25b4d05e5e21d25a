"""Files the service serves itself, all from this machine (nothing is loaded from a CDN or built at run time):
the search page (GET / and its assets under /page/: plain HTML, CSS and ES modules from service/page/) and the
assets of the API docs (Swagger UI at /docs, ReDoc at /redoc, from the fastapi-offline package). The page is open to
everyone (it holds no data); what it asks the API for is guarded like any other request."""
from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

PAGE = Path(__file__).parent / "page"
DOCS_ASSETS = "/static/docs"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"  # the one address ReDoc's bundle fetches by itself


@functools.lru_cache(maxsize=1)
def redoc_bundle() -> bytes:
    """ReDoc's script with its attribution logo taken from our assets instead of its CDN."""
    script = (files("fastapi_offline") / "static" / "redoc.standalone.js").read_text(encoding="utf-8")
    return script.replace(REDOC_CDN_LOGO, f"{DOCS_ASSETS}/favicon.png").encode()


def install(app: FastAPI) -> None:
    """The page, and /docs and /redoc over local assets; the app must be built with docs_url=None and
    redoc_url=None."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/page", StaticFiles(directory=PAGE), name="page")

    @app.get(f"{DOCS_ASSETS}/redoc.standalone.js", include_in_schema=False)  # before the mount, which it shadows
    def redoc_script() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - API reference",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
