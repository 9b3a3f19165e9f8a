"""Playwright (sync API) driving Debian's Chromium: the one place that imports Playwright, so a
missing install fails with a hint instead of a bare ImportError.

Never run ``playwright install`` (it downloads browsers); the tests use ``/usr/bin/chromium``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = (
    "the web tests need Playwright for Python and Debian's Chromium: "
    "pip install 'playwright==1.65.2' and apt-get install -y chromium "
    "(never `playwright install`: the tests launch /usr/bin/chromium)"
)

try:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(INSTALL_HINT) from exc

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "DESKTOP",
    "INSTALL_HINT",
    "PHONE",
    "Browser",
    "BrowserContext",
    "Page",
    "Playwright",
    "expect",
    "launch_chromium",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: A phone (390 x 844 CSS px, touch, mobile viewport rules) and a desktop browser window.
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}

#: Real processes and a real network between them: allow for a slow, shared machine.
expect.set_options(timeout=15_000)


def launch_chromium(playwright: Playwright) -> Browser:
    """Chromium from /usr/bin; pytest.fail (never skip) with an install hint if missing."""
    executable = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if executable is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
