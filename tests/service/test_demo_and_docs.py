"""The demo page, its static files and the offline API docs, through the ASGI transport: what
is served, with which policy, that nothing refers outside the service, and that every file the
page needs is in the wheel (so the Docker image, built from it, carries it)."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.config import Settings

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "service" / "static"
# Anything a browser could fetch from elsewhere: a scheme URL or a protocol-relative one.
OUTSIDE_URL = re.compile(r"(?:https?:|wss?:|ftp:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", re.IGNORECASE)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an XML name, never fetched
LINKS = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app without its lifespan: these routes need no model."""
    app = create_app(Settings(weights="random", devices="cpu"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://abpn") as c:
        yield c


async def test_the_page_and_its_files_are_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' blob:" in policy
    links = set(LINKS.findall(r.text))
    assert links == {
        "/static/favicon.svg",
        "/static/demo.css",
        "/static/demo.js",
        "/docs",
        "/redoc",
    }
    types = {
        "/static/favicon.svg": "image/svg+xml",
        "/static/demo.css": "text/css",
        "/static/demo.js": "text/javascript",
    }
    for path, media in types.items():
        asset = await client.get(path)
        assert asset.status_code == 200, path
        assert asset.headers["content-type"].split(";")[0] == media
        assert asset.content == (STATIC / path.rsplit("/", 1)[1]).read_bytes()


async def test_missing_static_file_is_a_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/static/nope.js")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_no_static_file_refers_outside_the_service() -> None:
    for path in sorted(STATIC.iterdir()):
        text = path.read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
        assert OUTSIDE_URL.findall(text) == [], path.name


def test_the_outside_url_check_finds_what_it_should() -> None:
    for text in ['<script src="https://cdn.example.com/x.js">', "url(//fonts.gstatic.com/a)"]:
        assert OUTSIDE_URL.search(text), text
    assert not OUTSIDE_URL.search('<a href="/docs">') and not OUTSIDE_URL.search("a // b")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_pages_use_local_assets_only(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert OUTSIDE_URL.findall(r.text) == []
    links = LINKS.findall(r.text)
    assert links and all(link.startswith("/docs-assets/") for link in links)
    for link in links:
        asset = await client.get(link)
        assert asset.status_code == 200 and len(asset.content) > 1000, link
    spec = "url: '/openapi.json'" if path == "/docs" else 'spec-url="/openapi.json"'
    assert spec in r.text


async def test_docs_policy_allows_only_the_pages_own_inline_script(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/docs")
    policy = r.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert len(scripts) == 1 and "SwaggerUIBundle(" in scripts[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'", f"'sha256-{digest}'"]
    assert "img-src 'self' data:" in policy  # so ReDoc's logo from its CDN is refused
    assert "validatorUrl" in r.text and '"validatorUrl": null' in r.text


async def test_pages_are_not_part_of_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not {"/", "/docs", "/redoc"} & set(paths)
    assert "/v1/retouch" in paths


def test_static_files_are_package_data(tmp_path: Path) -> None:
    """Built from a copy, so that setuptools' build/ folder stays out of the work tree."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("model", "service"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path)]
    subprocess.run(
        [sys.executable, "-m", "pip", *build, str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"service/static/{p.name}" for p in STATIC.iterdir()}
    assert expected <= names, expected - names


async def test_the_page_has_its_policy_under_static_too(client: httpx.AsyncClient) -> None:
    # Without it, /static/index.html was the page, frameable and unconstrained.
    page = await client.get("/")
    copy = await client.get("/static/index.html")
    assert copy.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert copy.headers.get("content-security-policy") == policy
