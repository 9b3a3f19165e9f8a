"""The web app's files as the relay serves them: from the installed package, under a strict
CSP that allows no inline script or style, and with nothing that turns text into HTML."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relay import Hub, RelayConfig, SqliteStorage, create_app
from relay.pages import load_assets
from testkit.asgi import ASGITransport

WEB = Path(__file__).resolve().parents[2] / "relay" / "web"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = RelayConfig(data_dir=tmp_path, port=0, public_url="http://relay.test")
    async with SqliteStorage.in_data_dir(tmp_path) as storage:
        app = create_app(storage, Hub(), config)
        transport = ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url=config.url) as c:
            yield c


def csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split()[0]: d.strip() for d in policy.split(";") if d.strip()}


async def test_pages_forbid_inline_script_and_style_and_framing(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/", "/s/ses_123"):
        response = await client.get(path)
        assert response.status_code == 200
        policy = csp(response)
        assert policy["default-src"] == "default-src 'self'"
        assert policy["script-src"] == "script-src 'self'"
        assert policy["style-src"] == "style-src 'self'"
        assert policy["frame-ancestors"] == "frame-ancestors 'none'"
        assert "unsafe" not in response.headers["content-security-policy"]
        html = response.text
        assert re.findall(r"<script\b[^>]*>", html) == [
            '<script type="module" src="/assets/app.js">'
        ]
        assert "<style" not in html and "style=" not in html
        assert not re.search(r"<[^>]*\son\w+\s*=", html, re.IGNORECASE)  # no inline handlers


async def test_every_file_the_page_and_modules_load_is_served(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    wanted = set(re.findall(r'(?:src|href)="(/assets/[^"]+)"', html))
    assert {"/assets/app.js", "/assets/app.css", "/assets/icon.svg"} <= wanted
    for module in WEB.glob("*.js"):
        for name in re.findall(r"from '\./([\w.]+)'", module.read_text()):
            wanted.add(f"/assets/{name}")
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in sorted(wanted):
        response = await client.get(path)
        assert response.status_code == 200, path
        kind = types.get(Path(path).suffix, "application/manifest+json")
        assert response.headers["content-type"].startswith(kind), path
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_assets_revalidate_by_etag_and_unknown_paths_are_404(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/assets/app.js")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"
    again = await client.get("/assets/app.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    for path in ("/assets/nope.js", "/assets/index.html", "/assets/%2e%2e/pages.py", "/assets/"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_assets_come_from_the_package_and_no_module_writes_html() -> None:
    assets = load_assets()
    assert {"app.js", "app.css", "api.js", "live.js", "icon.svg"} <= set(assets)
    assert "index.html" not in assets
    for module in WEB.glob("*.js"):
        source = module.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            # dom.js names the first two only to refuse them.
            allowed = module.name == "dom.js" and sink in ("innerHTML", "outerHTML")
            assert allowed or sink not in source, f"{module.name} uses {sink}"
