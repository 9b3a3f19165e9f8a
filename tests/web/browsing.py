"""Browser contexts a test opens, signed in like a person would, with every page error and
console error they saw (a test fails on any it did not expect)."""

from __future__ import annotations

from typing import Any

import attrs

from .browser import Browser, BrowserContext, Page, expect
from .stack import Stack

__all__ = ["NETWORK_NOISE", "Browsing", "no_horizontal_scroll"]

#: Console noise that is expected while the relay is down (the browser logs failed loads).
NETWORK_NOISE = ("net::ERR_", "Failed to load resource")


@attrs.define
class Browsing:
    """Open contexts (closed after the test) and every page error or console error seen."""

    browser: Browser
    contexts: list[BrowserContext] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)

    def context(self, **options: Any) -> BrowserContext:
        context = self.browser.new_context(**options)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context

    def sign_in(self, stack: Stack, **options: Any) -> Page:
        """A new browser context signed in with its own one-time link, on the home page."""
        page = self.context(**options).new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        page.goto(stack.relay.login_link())
        expect(page).to_have_url(f"{stack.relay.url}/")
        expect(page.get_by_role("heading", name="Environments")).to_be_visible()
        return page

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(noise in e for noise in NETWORK_NOISE)]


def no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"scrolls sideways at {page.url}: {widths}"
