"""/docs, /redoc and the demo page render in Chromium from the service alone: no request the
browser makes leaves the service's origin. (The test machines have no internet either, so a
CDN reference would also leave the page blank and fail the rendering check.)"""

from __future__ import annotations

import pytest
from browser_support import RESULT_TIMEOUT_MS
from e2e.server_support import Server
from playwright.sync_api import BrowserContext, Request

# The ReDoc bundle's side-menu logo: the page's Content-Security-Policy refuses it, so the
# browser never tries the network (ReDoc then hides the image).
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.mark.parametrize(
    ("path", "rendered", "refused_by_policy"),
    [
        ("/docs", ".swagger-ui .opblock-summary-path[data-path='/v1/retouch']", []),
        ("/redoc", "h2:has-text('Retouch a portrait')", [REDOCLY_LOGO]),
        ("/", "label[for='file']", []),
    ],
)
def test_renders_with_nothing_from_outside(
    context: BrowserContext, server: Server, path: str, rendered: str, refused_by_policy: list
) -> None:
    def local(request: Request) -> bool:
        return request.url.startswith((f"{server.url}/", f"blob:{server.url}/"))

    reached_out: list[str] = []  # requests elsewhere that went to the network
    refused: list[str] = []  # requests elsewhere that the page's policy stopped first
    context.on("requestfinished", lambda r: None if local(r) else reached_out.append(r.url))
    context.on(
        "requestfailed",
        lambda r: (
            None if local(r) else (refused if r.failure == "csp" else reached_out).append(r.url)
        ),
    )
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{server.url}{path}")
    page.wait_for_selector(rendered, timeout=RESULT_TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    assert reached_out == []
    assert refused == refused_by_policy
    assert page_errors == []
