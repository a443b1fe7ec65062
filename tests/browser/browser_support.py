"""Helpers of the browser tests: where Debian's Chromium is, how it is launched, the real
portrait they upload, and waits on the demo page's state."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, Request

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "images"
UPDATE_SCREENSHOTS = os.environ.get("ABPN_UPDATE_SCREENSHOTS") == "1"
"""Set to 1 to (re)write the committed screenshots; otherwise they go to pytest's tmp dir only,
so that a test run leaves the work tree clean."""

# The machines have no internet: without these, Chromium's background services (updates,
# sync, safe browsing...) keep trying and fill the logs with refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

RESULT_TIMEOUT_MS = 120_000
"""Shipped weights on two busy CPU cores: a 512x600 photo takes a second or two; the margin is
for a loaded CI machine."""


def chromium_path() -> str | None:
    """Debian's Chromium (`apt-get install chromium`), if installed."""
    return shutil.which("chromium")


def portrait() -> Path:
    """A real portrait: Grace Hopper, 512x600 JPEG, shipped inside matplotlib's wheel."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


PORTRAIT_SIZE = (512, 600)


def is_retouch(request: Request) -> bool:
    """A call of the retouching endpoint."""
    return request.method == "POST" and urlsplit(request.url).path == "/v1/retouch"


def query(request: Request) -> dict[str, str]:
    """The request's query parameters (one value each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


def wait_for_result(page: Page) -> None:
    """Until no request runs and a result is on show."""
    page.wait_for_function(
        """() => document.getElementById("viewer").getAttribute("aria-busy") === "false"
                 && !document.getElementById("after").hidden""",
        timeout=RESULT_TIMEOUT_MS,
    )


def wait_idle(page: Page) -> None:
    """Until no request runs (whatever it ended with)."""
    page.wait_for_function(
        """() => document.getElementById("viewer").getAttribute("aria-busy") === "false" """,
        timeout=RESULT_TIMEOUT_MS,
    )


def save_screenshot(page: Page, tmp_dir: Path, name: str) -> Path:
    """A full-page screenshot in `tmp_dir`, and in docs/images when asked to update them."""
    shot = tmp_dir / name
    page.screenshot(path=str(shot), full_page=True)
    if UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / name)
    return shot
