"""Fixtures for the web app's browser tests: one Chromium for the whole run, and per test a
relay and a daemon as real processes (see :mod:`tests.web.stack`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.fakes import claude_env, find_claude
from testkit.harness import REPO

from .browser import Browser, launch_chromium
from .browsing import Browsing
from .stack import Stack, fake_messages_api, start_stack

#: Screenshots for people to look at (git-ignored).
ARTIFACTS = REPO / "test-artifacts" / "web"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def claude_stack(tmp_path: Path) -> Iterator[Stack]:
    claude = find_claude()  # fails (never skips) with an install hint when missing
    with fake_messages_api() as base_url:
        running = start_stack(
            tmp_path, agent_bin=claude, agent_env=claude_env(tmp_path / "home", base_url)
        )
        try:
            yield running
        finally:
            running.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def browsing(browser: Browser) -> Iterator[Browsing]:
    browsing = Browsing(browser)
    try:
        yield browsing
    finally:
        for context in browsing.contexts:
            context.close()
    assert browsing.unexpected_errors() == []
