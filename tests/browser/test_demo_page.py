"""The demo page in headless Chromium against a real server on the shipped weights: a real
portrait in, the result at its size, the mask overlay, parameters that re-run the request, the
API's error text (a corrupt file; a 503 with Retry-After), the API key header, keyboard use and
a phone-sized screen."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser_support import (
    PORTRAIT_SIZE,
    is_retouch,
    portrait,
    query,
    save_screenshot,
    wait_for_result,
    wait_idle,
)
from e2e.server_support import Server, start_server, wait_for
from images import encoded, picture, slow_portrait
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Request

BUSY = (2400, 2048)  # a large face: seconds of CPU work for the random network, the window needed
SIZE_JS = (
    "(id) => [document.getElementById(id).naturalWidth, document.getElementById(id).naturalHeight]"
)


def upload(page: Page, path: Path | None = None) -> None:
    """Choose a photo and wait for its result."""
    page.set_input_files("#file", str(path or portrait()))
    wait_for_result(page)


def retouched_by_api(server: Server, photo: bytes, **params: str) -> bytes:
    """The API's answer for `photo` as a JPEG body, asked directly over HTTP."""
    r = httpx.post(
        f"{server.url}/v1/retouch",
        params=params,
        content=photo,
        headers={"content-type": "image/jpeg"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.content


def record_retouch_requests(page: Page) -> list[Request]:
    """Every POST /v1/retouch the page sends from now on."""
    seen: list[Request] = []
    page.on("request", lambda r: seen.append(r) if is_retouch(r) else None)
    return seen


def test_a_real_portrait_is_retouched_at_its_size(page: Page, server: Server) -> None:
    requests = record_retouch_requests(page)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    with page.expect_response(lambda r: is_retouch(r.request)) as answer:
        upload(page)

    # One call of the public endpoint, the photo as the raw body, the sliders' defaults.
    assert len(requests) == 1
    sent = requests[0]
    assert query(sent) == {"strength": "1", "whitening": "0"}
    assert sent.headers["content-type"] == "image/jpeg"
    assert "authorization" not in sent.headers

    assert page.evaluate(SIZE_JS, "after") == list(PORTRAIT_SIZE)
    assert page.evaluate(SIZE_JS, "before") == list(PORTRAIT_SIZE)
    after, before = page.locator("#after").bounding_box(), page.locator("#before").bounding_box()
    assert after == before  # drawn exactly over the original, at the same scale
    assert page.inner_text("#size") == "512 × 600 px"
    assert page.locator("#error").is_hidden()
    assert page.inner_text("#status").startswith("Retouched 1 face at strength 1.00")

    # The Server-Timing split of that response, then the browser's own round trip.
    names = page.locator("#timings dt").all_inner_texts()
    assert names == ["queue", "decode", "faces", "model", "encode", "round trip"]
    millis = [float(t.removesuffix(" ms")) for t in page.locator("#timings dd").all_inner_texts()]
    assert millis[3] > 0 and millis[5] >= millis[3]
    server_model_ms = answer.value.headers["server-timing"].split("model;dur=")[1].split(",")[0]
    assert millis[3] == float(server_model_ms)

    # The download, named after the upload, is byte for byte what the API answers any client
    # for this photo (which also shows what the page sent: Playwright hides File bodies).
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "grace_hopper.retouched.jpg"
    downloaded = Path(download.value.path()).read_bytes()
    assert downloaded == retouched_by_api(server, portrait().read_bytes())
    assert console_errors == []


def test_mask_toggle_overlays_the_api_mask(page: Page, server: Server) -> None:
    upload(page)
    overlay = page.locator("#mask-overlay")
    assert overlay.is_hidden()

    requests = record_retouch_requests(page)
    page.focus("#mask-toggle")
    page.keyboard.press("Space")
    wait_idle(page)
    assert [query(r) for r in requests] == [
        {"strength": "1", "whitening": "0", "output": "mask", "format": "png"}
    ]
    assert overlay.is_visible()
    assert overlay.bounding_box() == page.locator("#after").bounding_box()

    # The overlay is the API's own mask: non-zero exactly where the mask is.
    api_mask = retouched_by_api(server, portrait().read_bytes(), output="mask", format="png")
    mask = np.asarray(Image.open(io.BytesIO(api_mask)))
    assert mask.shape == PORTRAIT_SIZE[::-1] and mask.any()
    drawn = page.evaluate(
        """() => {
            const c = document.getElementById("mask-overlay");
            const a = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < a.length; i += 4) if (a[i] > 0) n++;
            return [c.width, c.height, n];
        }"""
    )
    assert drawn == [*PORTRAIT_SIZE, int((mask > 0).sum())]

    page.keyboard.press("Space")
    assert overlay.is_hidden()
    page.keyboard.press("Space")  # same parameters: shown again without a new request
    assert overlay.is_visible()
    assert len(requests) == 1


def test_a_photo_without_a_face_says_so(page: Page, tmp_path: Path) -> None:
    photo = tmp_path / "texture.png"
    photo.write_bytes(encoded(picture(120, 160)))
    upload(page, photo)
    assert page.inner_text("#status") == "No face found: the photo is returned unchanged."
    assert page.locator("#error").is_hidden()


def test_changing_a_parameter_reruns_the_request_once(page: Page) -> None:
    upload(page)
    first_result = page.get_attribute("#after", "src")
    requests = record_retouch_requests(page)

    page.focus("#strength")
    with page.expect_response(lambda r: is_retouch(r.request)):
        for _ in range(3):  # presses 0.1 s apart: debounced into one request
            page.keyboard.press("ArrowLeft")
            page.wait_for_timeout(100)
    wait_for_result(page)
    assert [query(r) for r in requests] == [{"strength": "0.85", "whitening": "0"}]
    assert page.inner_text("#strength-value") == "0.85"
    assert page.get_attribute("#after", "src") != first_result
    assert "strength 0.85" in page.inner_text("#status")

    page.focus("#whitening")
    with page.expect_response(lambda r: is_retouch(r.request)):
        page.keyboard.press("ArrowRight")
    wait_for_result(page)
    assert query(requests[-1]) == {"strength": "0.85", "whitening": "0.05"}
    assert len(requests) == 2


def test_a_corrupt_file_shows_the_api_error_message(page: Page, server: Server) -> None:
    broken = portrait().read_bytes()[:20_000]  # a real JPEG cut short
    api = httpx.post(
        f"{server.url}/v1/retouch", content=broken, headers={"content-type": "image/jpeg"}
    )
    assert api.status_code == 400
    message = api.json()["error"]["message"]

    page.set_input_files(
        "#file", files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": broken}]
    )
    wait_idle(page)
    error = page.locator("#error")
    assert error.is_visible()
    assert error.get_attribute("role") == "alert"
    assert message in error.inner_text()
    assert "400 invalid_image" in error.inner_text()
    assert page.inner_text("#status") == "The request failed."
    assert page.locator("#after").is_hidden() and page.locator("#split").is_hidden()

    upload(page)  # a good photo clears it
    assert error.is_hidden()
    assert page.locator("#split").is_visible()


def test_api_key_is_sent_and_kept_for_the_tab(page: Page, browser: Browser, server: Server) -> None:
    requests = record_retouch_requests(page)
    page.fill("#api-key", "demo-key-1")
    upload(page)
    assert requests[0].headers["authorization"] == "Bearer demo-key-1"

    page.reload()
    assert page.input_value("#api-key") == "demo-key-1"

    other = browser.new_context()  # another tab's session: nothing kept
    try:
        tab = other.new_page()
        tab.goto(f"{server.url}/")
        assert tab.input_value("#api-key") == ""
    finally:
        other.close()


def test_keyboard_order_and_visible_focus(page: Page) -> None:
    order, outlines = [], []
    for _ in range(7):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate("() => document.activeElement.id || document.activeElement.textContent")
        )
        # The hidden file input shows its focus on the drop zone around it.
        outlines.append(
            page.evaluate(
                """() => {
                    const a = document.activeElement;
                    const shown = a.id === "file" ? a.closest(".drop") : a;
                    const s = getComputedStyle(shown);
                    return s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2;
                }"""
            )
        )
    assert order == [
        "Swagger UI",
        "ReDoc",
        "file",
        "strength",
        "whitening",
        "mask-toggle",
        "api-key",
    ]
    assert all(outlines), dict(zip(order, outlines, strict=True))

    upload(page)
    page.focus("#split")
    page.keyboard.press("End")
    assert page.inner_text("#split-value") == "100%"
    assert page.evaluate("() => getComputedStyle(document.getElementById('after')).clipPath") == (
        "inset(0px 0px 0px 100%)"
    )
    page.keyboard.press("Home")
    assert page.inner_text("#split-value") == "0%"


def test_screenshot_with_a_real_result(page: Page, tmp_path: Path) -> None:
    upload(page)
    page.check("#mask-toggle")
    wait_idle(page)
    assert page.locator("#mask-overlay").is_visible()
    shot = save_screenshot(page, tmp_path, "demo_page.png")
    with Image.open(shot) as img:
        assert img.width == 1280


def test_readable_on_a_phone(browser: Browser, server: Server, tmp_path: Path) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = phone.new_page()
        page.goto(f"{server.url}/")
        upload(page)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390  # nothing sticks out sideways
        controls = page.locator(".controls").bounding_box()
        viewer = page.locator("#viewer").bounding_box()
        assert controls["y"] + controls["height"] <= viewer["y"]  # one column
        stage = page.locator("#stage").bounding_box()
        assert stage["width"] <= 390 and stage["width"] > 300
        assert page.evaluate(SIZE_JS, "after") == list(PORTRAIT_SIZE)
        save_screenshot(page, tmp_path, "demo_page_phone.png")
    finally:
        phone.close()


def test_a_full_queue_shows_503_with_retry_after(
    context: BrowserContext, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One image at a time and one queue place (random weights: only the refusal matters): a
    large image keeps the replica busy, a second request takes the place, and the page's
    request is refused at once, as any client's would be."""
    srv = start_server(tmp_path_factory.mktemp("narrow"), max_batch_size=1, max_queue=1)
    try:
        page = context.new_page()
        page.goto(f"{srv.url}/")
        png = {"content-type": "image/png"}
        with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=srv.url, timeout=120) as api:
            batches = srv.metric("abpn_batch_size_count", device="cpu")
            busy = encoded(slow_portrait(*BUSY))
            big = pool.submit(api.post, "/v1/retouch", content=busy, headers=png)
            wait_for(
                lambda: srv.metric("abpn_batch_size_count", device="cpu") == batches + 1,
                what="the large image reaching the replica",
            )
            queued = pool.submit(api.post, "/v1/retouch", content=encoded(picture()), headers=png)
            wait_for(lambda: srv.metric("abpn_queue_depth") == 1, what="the queue place taken")
            with page.expect_response(lambda r: is_retouch(r.request)) as answer:
                page.set_input_files("#file", str(portrait()))
            wait_idle(page)
            # The same refusal, asked directly (Playwright cannot read the page's response body
            # here); the replica is still on the large image, seconds from done.
            refused = api.post("/v1/retouch", content=encoded(picture()), headers=png)
            assert big.result().status_code == 200 and queued.result().status_code == 200
        assert answer.value.status == refused.status_code == 503
        error = refused.json()["error"]
        assert error["code"] == "queue_full"
        text = page.inner_text("#error")
        assert error["message"] in text
        assert f"503 queue_full · retry after {refused.headers['retry-after']} s" in text
    finally:
        srv.stop()


def test_with_api_keys_the_page_asks_for_one_and_sends_it(
    context: BrowserContext, tmp_path: Path
) -> None:
    srv = start_server(tmp_path, api_keys="first-key-0123456789,second-key-0123456789")
    try:
        tab = context.new_page()
        tab.goto(f"{srv.url}/")  # the page itself stays open
        tab.set_input_files("#file", str(portrait()))
        error = tab.locator("#error")
        error.wait_for(state="visible", timeout=60_000)
        refused = httpx.post(f"{srv.url}/v1/retouch", content=b"x")
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] in error.inner_text()
        assert tab.evaluate("document.activeElement.id") == "api-key"

        tab.fill("#api-key", "second-key-0123456789")
        with tab.expect_response(lambda r: is_retouch(r.request)) as answer:
            tab.press("#api-key", "Enter")
        assert answer.value.status == 200
        wait_for_result(tab)
        assert error.is_hidden()
    finally:
        srv.stop()
