"""Choosing a session's agent from the phone (Chromium via Playwright; the real ``claude``
CLI and the real ``claude-agent-acp`` against the fake Messages API, relay and daemon real
processes): New session offers the agents the environment allows (``rcd start
--allow-agent claude-acp``), the default first; a session started with the ACP one runs
it, says so in its header and in the list, and asks for its Write on the phone."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.fakes import claude_env, find_claude, find_claude_acp

from .browser import PHONE, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack, fake_messages_api, start_stack
from .test_web_app import agent_texts, session_id_of


@pytest.fixture
def two_agents(tmp_path: Path) -> Iterator[Stack]:
    claude, adapter = find_claude(), find_claude_acp()
    with fake_messages_api() as base_url:
        env = claude_env(tmp_path / "home", base_url)
        # claude-agent-acp found on PATH (as --allow-agent finds it); as root, Claude Code
        # wants to be told it is in a sandbox of sorts.
        env |= {"PATH": f"{os.path.dirname(adapter)}:{env['PATH']}", "IS_SANDBOX": "1"}
        running = start_stack(
            tmp_path, "--allow-agent", "claude-acp", agent_bin=claude, agent_env=env
        )
        try:
            yield running
        finally:
            running.close()


def test_a_session_of_the_allowed_acp_agent_from_the_phone(
    two_agents: Stack, browsing: Browsing, artifacts: Path
) -> None:
    stack = two_agents
    phone = browsing.sign_in(stack, **PHONE)
    phone.get_by_role("button", name="New session").tap()
    agent = phone.get_by_label("Agent")
    expect(agent.locator("option")).to_have_text(["claude (default)", "claude-acp"])
    agent.select_option("claude-acp")
    phone.get_by_label("First prompt").fill("hello over acp")
    no_horizontal_scroll(phone)
    phone.screenshot(path=artifacts / "phone-new-session-agent.png")
    phone.get_by_role("button", name="Start session").tap()
    expect(phone).to_have_url(re.compile(r"/s/ses_\w+$"))
    expect(agent_texts(phone)).to_have_text(["echo: hello over acp"])
    expect(phone.locator(".session-agent")).to_have_text("claude-acp")
    session = stack.api.get(f"/api/sessions/{session_id_of(phone)}").json()
    assert session["agent"] == "claude-acp"

    target = stack.project / "over-acp.txt"
    box = phone.get_by_label("Message")
    box.fill(f"write {target} asked")
    box.press("Enter")
    card = phone.get_by_role("group", name="Permission request: Write")
    expect(card).to_contain_text("the agent offers")
    card.get_by_role("button", name="Allow").tap()
    expect(agent_texts(phone).last).to_contain_text("done")
    assert target.read_text() == "asked"
    phone.screenshot(path=artifacts / "phone-acp-session.png", full_page=True)

    phone.get_by_role("link", name="All sessions").tap()
    expect(phone.locator(".session-row-where").first).to_contain_text("claude-acp")
