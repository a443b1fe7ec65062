"""Fixtures of the browser tests: a real server on the shipped weights and Debian's headless
Chromium driven by Playwright. Without Chromium they skip, saying why, except in CI (CI=true),
where .ci/run installs it and its absence is a failure."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from browser_support import CHROMIUM_ARGS, chromium_path
from e2e.server_support import Server, start_server
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable, or a skip (a failure in CI)."""
    path = chromium_path()
    if path is None:
        missing = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing}: .ci/run installs it in CI")
        pytest.skip(f"{missing}: the browser tests need it")
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """One headless Chromium per test module. Playwright gives each launch a new, empty
    profile directory and each context its own storage. Not per session: Playwright's sync API
    keeps an event loop running in this thread while it is open, and the asyncio tests of
    other folders could not start theirs."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service on its shipped weights (the screenshots show a real result), CPU."""
    srv = start_server(tmp_path_factory.mktemp("browser-server"), weights="")
    yield srv
    srv.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context at a desktop size."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, server: Server) -> Page:
    """A tab on the demo page."""
    tab = context.new_page()
    tab.goto(f"{server.url}/")
    return tab
