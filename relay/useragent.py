"""A browser's ``User-Agent`` told in words people recognise: ``Chrome on Android``.

Only for showing a sign-in to its owner (``rcd relay sign-ins list``, the web app's
signed-in devices); nothing is decided by it. Unknown agents are shown as a short prefix
of what they sent.
"""

from __future__ import annotations

import re

__all__ = ["MAX_USER_AGENT", "describe_user_agent", "stored_user_agent"]

#: Characters of a ``User-Agent`` kept with a sign-in (real ones are about 150).
MAX_USER_AGENT = 512

# Order matters: most browsers also claim to be the ones they are built on.
_BROWSERS = (
    ("Edg", "Edge"),
    ("EdgA", "Edge"),
    ("EdgiOS", "Edge"),
    ("OPR", "Opera"),
    ("SamsungBrowser", "Samsung Internet"),
    ("Firefox", "Firefox"),
    ("FxiOS", "Firefox"),
    ("HeadlessChrome", "Headless Chrome"),
    ("CriOS", "Chrome"),
    ("Chromium", "Chromium"),
    ("Chrome", "Chrome"),
    ("Version", "Safari"),  # Safari says "Version/17.4 ... Safari/605.1.15"
    ("curl", "curl"),
    ("python-httpx", "httpx"),
    ("python-requests", "requests"),
)

_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def stored_user_agent(header: str | None) -> str | None:
    """What is kept of a request's ``User-Agent``: printable, at most
    :data:`MAX_USER_AGENT` characters; None when there is nothing."""
    if not header:
        return None
    text = "".join(c for c in header if c.isprintable()).strip()
    return text[:MAX_USER_AGENT] or None


def describe_user_agent(user_agent: str | None) -> str:
    """``"<browser> on <system>"`` (either part may be missing), or ``"unknown browser"``."""
    if not user_agent:
        return "unknown browser"
    products = {m.group(1) for m in re.finditer(r"([A-Za-z][\w.-]*)/[\w.]", user_agent)}
    browser = next((name for token, name in _BROWSERS if token in products), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or f"a browser on {system}"
    return user_agent[:40].strip()
