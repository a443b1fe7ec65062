"""The demo page: `GET /` and its static files (`/static/...`), package data of `service`.

The page is plain HTML, CSS and JavaScript that calls `POST /v1/retouch` like any other client;
nothing is built or fetched at run time.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

STATIC_DIR = files("service") / "static"
"""The page's files. The package is installed as plain files (wheel or editable), so this is a
real directory that StaticFiles can serve."""

STATIC_URL = "/static"

# The browser enforces what the page promises: it can load and call nothing but this origin
# (blob: for the photos it shows; inline scripts and styles are refused).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


async def index() -> FileResponse:
    """The demo page."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


class _PageFiles(StaticFiles):
    """The page's files, each under the page's policy: `/static/index.html` is the page too,
    and must not be served framable or unconstrained."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        """Starlette's response for a file, with the policy added."""
        response = super().file_response(*args, **kwargs)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


def install(app: FastAPI) -> None:
    """Serve the page at `/` and its files under `/static`."""
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount(STATIC_URL, _PageFiles(directory=str(STATIC_DIR)), name="static")
