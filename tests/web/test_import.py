"""A conversation of the local ``claude`` CLI (the real one, two turns of ``claude -p``
against the fake Messages API) carried to the phone with ``rcd import``: the phone sees the
earlier turns, marked as typed in the terminal, and its next message gets a reply that
knows them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relay import admin
from testkit.fakes import local_conversation

from .browser import PHONE, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack
from .test_web_app import agent_texts


def test_an_imported_conversation_shows_its_earlier_turns_on_the_phone(
    claude_stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    stack = claude_stack
    home = Path(stack.env["HOME"])
    conversation = local_conversation(
        home, stack.env["ANTHROPIC_BASE_URL"], stack.project,
        ["echo first words", "echo second words"],
    )  # fmt: skip
    token = admin.create_device_token(stack.relay.data_dir, "cli")
    done = subprocess.run(
        [sys.executable, "-m", "cli", "import", conversation[:8], "--token", token],
        env=stack.env, cwd=stack.project, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = done.stdout.splitlines()[0]
    assert url.startswith(f"{stack.relay.url}/s/ses_")

    phone = browsing.sign_in(stack, **PHONE)
    phone.goto(url)
    users = phone.locator(".events .msg.user")
    expect(users.locator(".msg-text")).to_have_text(["echo first words", "echo second words"])
    expect(users.locator(".msg-origin")).to_have_text(["from terminal", "from terminal"])
    expect(agent_texts(phone)).to_have_text(["echo: echo first words", "echo: echo second words"])
    phone.screenshot(path=artifacts / "phone-imported.png")
    no_horizontal_scroll(phone)

    box = phone.get_by_label("Message")
    box.fill("recall")
    box.press("Enter")
    expect(agent_texts(phone).last).to_have_text("recalled: echo first words | echo second words")
