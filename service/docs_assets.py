"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from local files, for offline and air-gapped
clusters: the JavaScript and CSS come from the `fastapi-offline` package (Swagger UI 5, ReDoc 2,
vendored there as plain files) and are served under `/docs-assets`; no CDN is referenced.

Each page also carries a Content-Security-Policy that confines it to this origin, because the
ReDoc bundle itself hard-codes one outside URL (the Redocly logo in its side menu, which it
hides when it cannot load): the browser then refuses it instead of trying the internet.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = files("fastapi_offline") / "static"
"""swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""

ASSETS_URL = "/docs-assets"

# Both renderers inject <style> elements at run time; ReDoc runs its search in a blob: worker.
_POLICY = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """The policy for a docs page: scripts from this origin, plus the page's own inline
    scripts by their SHA-256 (Swagger UI's start-up call), nothing else."""
    digests = (hashlib.sha256(s.encode()).digest() for s in _INLINE_SCRIPT.findall(html))
    hashes = "".join(f" 'sha256-{base64.b64encode(d).decode()}'" for d in digests)
    return _POLICY.format(scripts=hashes)


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = content_security_policy(page.body.decode())
    return page


def install(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their assets. The app must be made with `docs_url=None` and
    `redoc_url=None`, so that FastAPI's CDN-based pages are not registered as well."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title}: Swagger UI",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                # The online validator would send the spec to swagger.io.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_policy(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title}: ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
