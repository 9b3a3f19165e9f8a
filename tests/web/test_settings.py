"""Environment settings from the phone (Chromium via Playwright; relay, daemon and the
scripted agent real processes): a variable set on the settings page reaches the agent of a
new session and not one already running, its value is never shown again, and what the
daemon's command line sets is shown pinned, not editable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import PHONE, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack, start_stack


@pytest.fixture
def pinned_stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, "--capacity", "3")
    try:
        yield running
    finally:
        running.close()


def printenv(stack: Stack, session_id: str, name: str) -> str:
    """The agent's answer to ``printenv NAME`` (approved as the phone would)."""
    posted = stack.api.post(
        f"/api/sessions/{session_id}/messages",
        json={"id": f"env-{name}", "text": f"run printenv {name} || echo unset"},
    )
    assert posted.status_code == 202
    events = stack.wait_events(
        session_id, lambda evs: any(e["kind"] == "permission_request" for e in evs)
    )
    request = next(e for e in events if e["kind"] == "permission_request")["data"]
    decided = stack.api.post(
        f"/api/sessions/{session_id}/permissions/{request['request_id']}",
        json={"decision": "allow"},
    )
    assert decided.is_success
    events = stack.wait_events(session_id, lambda evs: any(e["kind"] == "tool_result" for e in evs))
    result: str = next(e for e in events if e["kind"] == "tool_result")["data"]["content"]
    return result.strip()


def new_session(stack: Stack) -> str:
    created = stack.api.post(f"/api/environments/{stack.environment_id}/sessions", json={})
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    stack.wait_events(session_id, lambda evs: any(e["kind"] == "session_started" for e in evs))
    return session_id


def test_a_variable_set_on_the_phone_reaches_new_sessions_and_pinned_is_shown(
    pinned_stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    stack = pinned_stack
    old = new_session(stack)
    phone = browsing.sign_in(stack, **PHONE)
    phone.get_by_role("link", name="Settings of laptop").tap()
    expect(phone.get_by_role("heading", name="Settings · laptop")).to_be_visible()

    secret = "hello-from-the-phone"
    phone.get_by_label("Variable name").fill("GREETING")
    phone.get_by_label("Variable value").fill(secret)
    phone.get_by_role("button", name="Set", exact=True).tap()
    expect(phone.get_by_role("status")).to_have_text("Saved GREETING.")
    row = phone.locator(".var", has_text="GREETING")
    expect(row).to_contain_text("••••••")
    assert secret not in phone.content()
    assert secret not in stack.api.get(f"/api/environments/{stack.environment_id}/settings").text

    # What the command line sets is shown so, and cannot be changed here.
    expect(phone.get_by_label("Capacity")).to_be_disabled()
    expect(phone.locator(".pinned")).to_have_text(
        "Set by the daemon's command line (rcd start --capacity): change it there."
    )
    phone.screenshot(path=artifacts / "phone-settings.png", full_page=True)
    no_horizontal_scroll(phone)

    assert printenv(stack, new_session(stack), "GREETING") == secret
    assert printenv(stack, old, "GREETING") == "unset"

    # Removed from the phone: gone for the next session.
    phone.get_by_role("button", name="Remove GREETING").tap()
    expect(phone.get_by_text("None set.")).to_be_visible()
    assert printenv(stack, new_session(stack), "GREETING") == "unset"
