"""The web app in a real browser (Chromium via Playwright) against a real relay, a real
daemon and the tiny stand-in agent: a phone and a desktop drive one session together,
agent text stays text, a relay restart neither loses nor repeats events, and the phone
layout never scrolls sideways."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from testkit.waiting import eventually_sync

from .browser import DESKTOP, PHONE, Page, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack, bad_gateway, start_stack

XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'


def session_id_of(page: Page) -> str:
    return page.url.rsplit("/", 1)[1]


def agent_texts(page: Page) -> Any:
    """The agent's finished messages (not the one being written)."""
    return page.locator(".events .msg.agent")


def start_from_phone(page: Page, prompt: str) -> str:
    """Home → "New session" → first prompt → Start; returns the new session's id."""
    page.get_by_role("button", name="New session").tap()
    expect(page.get_by_role("heading", name="New session")).to_be_visible()
    page.get_by_label("First prompt").fill(prompt)
    page.get_by_role("button", name="Start session").tap()
    expect(page).to_have_url(re.compile(r"/s/ses_\w+$"))
    return session_id_of(page)


def test_phone_and_desktop_share_a_session_and_the_phone_approves(
    stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    phone = browsing.sign_in(stack, **PHONE)
    env = phone.locator(f'[data-environment-id="{stack.environment_id}"]')
    expect(env).to_contain_text("laptop")
    expect(env).to_contain_text(str(stack.project))
    expect(env).to_contain_text("0/32")
    expect(env.get_by_role("img", name="online")).to_be_visible()
    phone.screenshot(path=artifacts / "phone-home.png")

    phone.get_by_role("button", name="New session").tap()
    expect(phone.get_by_role("heading", name="New session")).to_be_visible()
    expect(phone.get_by_role("radio", name=re.compile("laptop"))).to_be_checked()
    phone.get_by_label("First prompt").fill("hello from the phone")
    phone.screenshot(path=artifacts / "phone-new-session.png")
    phone.get_by_role("button", name="Start session").tap()
    expect(phone).to_have_url(re.compile(r"/s/ses_\w+$"))
    expect(agent_texts(phone)).to_have_text(["echo: hello from the phone"])
    expect(phone.locator(".msg.user")).to_have_text(["hello from the phone"])
    expect(phone.locator(".badge")).to_have_attribute("data-state", "idle")
    phone.screenshot(path=artifacts / "phone-session.png")

    # The desktop opens the URL the API hands out for the session.
    session = stack.api.get(f"/api/sessions/{session_id_of(phone)}").json()
    desktop = browsing.sign_in(stack, **DESKTOP)
    desktop.goto(session["url"])
    expect(desktop.get_by_role("heading", name="hello from the phone")).to_be_visible()
    expect(agent_texts(desktop)).to_have_text(["echo: hello from the phone"])

    target = stack.project / "from-the-desktop.txt"
    box = desktop.get_by_label("Message")
    box.fill(f"write {target} approved on the phone")
    box.press("Enter")
    expect(box).to_have_value("")

    card = phone.get_by_role("group", name="Permission request: Write")
    expect(card).to_contain_text(f"Write {target}")  # the description
    expect(card).to_contain_text("approved on the phone")  # the input
    expect(phone.locator(".badge")).to_have_attribute("data-state", "awaiting_permission")
    card.scroll_into_view_if_needed()
    phone.screenshot(path=artifacts / "phone-permission.png")
    assert not target.exists()
    card.get_by_role("button", name="Allow").tap()

    expect(agent_texts(desktop)).to_have_text(["echo: hello from the phone", "done"])
    tool = desktop.locator("details.tool", has_text="Write")
    tool.locator("summary").click()
    expect(tool.locator(".tool-result")).to_contain_text("File created successfully")
    expect(desktop.get_by_role("group", name="Permission request: Write")).to_contain_text(
        "Allowed"
    )
    expect(card).to_contain_text("Allowed")
    expect(card.get_by_role("button")).to_have_count(0)
    assert target.read_text() == "approved on the phone"

    # Shift+Enter is a newline, Enter sends; the phone sees the desktop's message too.
    box.fill("two")
    box.press("Shift+Enter")
    box.press_sequentially("lines")
    box.press("Enter")
    expect(agent_texts(phone).last).to_have_text("echo: two\nlines")
    expect(phone.locator(".msg.user")).to_have_count(3)
    expect(phone.locator(".msg.user.pending")).to_have_count(0)


def test_agent_text_is_shown_as_text_and_never_runs(stack: Stack, browsing: Browsing) -> None:
    page = browsing.sign_in(stack, **PHONE)
    start_from_phone(page, XSS)
    expect(agent_texts(page)).to_have_text([f"echo: {XSS}"])
    expect(page.locator(".msg.user")).to_have_text([XSS])
    expect(page.locator(".session-title")).to_have_text(XSS)

    # Markup inside a fenced block and inside a tool's input and description.
    fenced = f"```\n{XSS}\n```"
    box = page.get_by_label("Message")
    box.fill(fenced)
    box.press("Enter")
    expect(agent_texts(page).last.locator("pre")).to_have_text(XSS)
    box.fill(f"write {stack.project}/<b>x</b>.txt {XSS}")
    box.press("Enter")
    card = page.get_by_role("group", name="Permission request: Write")
    expect(card).to_contain_text("<b>x</b>.txt")
    expect(card).to_contain_text(XSS)
    card.get_by_role("button", name="Deny").tap()
    expect(card).to_contain_text("Denied")
    expect(agent_texts(page).last).to_have_text("not written")

    # A rename is text too, and so is the title on the home page.
    page.get_by_role("button", name="Rename").tap()
    title = page.get_by_label("Session title")
    title.fill(f"renamed {XSS}")
    title.press("Enter")
    expect(page.locator(".session-title")).to_have_text(f"renamed {XSS}")
    page.get_by_role("link", name="All sessions").tap()
    expect(page.locator(".session-row-title")).to_have_text([f"renamed {XSS}"])

    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("img:not(.brand img):not(.hero-icon)").count() == 0
    assert not list(stack.project.iterdir())


def test_signed_out_until_a_login_link_and_after_sign_out(stack: Stack, browsing: Browsing) -> None:
    stranger = browsing.context(**PHONE).new_page()
    created = stack.api.post(f"/api/environments/{stack.environment_id}/sessions", json={})
    stranger.goto(created.json()["url"])
    expect(stranger.get_by_role("heading", name="Signed out")).to_be_visible()
    expect(stranger.get_by_text("rcd relay login-link")).to_be_visible()

    page = browsing.sign_in(stack, **PHONE)
    page.get_by_role("button", name="Sign out").tap()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    assert page.context.cookies() == []


def test_a_relay_restart_neither_loses_nor_repeats_events(stack: Stack, browsing: Browsing) -> None:
    page = browsing.sign_in(stack, **DESKTOP)
    created = stack.api.post(
        f"/api/environments/{stack.environment_id}/sessions", json={"prompt": "before"}
    ).json()
    page.goto(created["url"])
    expect(agent_texts(page)).to_have_text(["echo: before"])
    banner = page.get_by_role("status")
    expect(banner).to_be_hidden()

    # An `error` event of the session log is a message, not a broken stream.
    box = page.get_by_label("Message")
    box.fill("sleep 30")
    box.press("Enter")
    expect(page.locator(".badge")).to_have_attribute("data-state", "busy")
    page.get_by_role("button", name="Interrupt").click()
    expect(page.locator(".turn-end.stopped")).to_have_count(1)
    expect(page.locator(".note.error")).to_be_visible()
    page.wait_for_timeout(500)  # clock: nothing breaks in the half second after it
    expect(banner).to_be_hidden()

    # Down: EventSource retries by itself and resumes with Last-Event-ID.
    stack.relay.stop()
    expect(banner).to_have_text("Reconnecting…")
    stack.relay.start()  # same port, same data dir: the cookie still works
    expect(banner).to_be_hidden(timeout=30_000)
    eventually_sync(
        lambda: stack.environment()["online"], timeout=30, what="the daemon to reconnect"
    )
    box.fill("between")
    box.press("Enter")
    expect(agent_texts(page)).to_have_text(["echo: before", "echo: between"])

    # Behind a proxy that answers 502 meanwhile: EventSource gives up on an HTTP error,
    # and the page opens a new stream with ?after=<last seq>.
    stack.relay.stop()
    expect(banner).to_have_text("Reconnecting…")
    with bad_gateway(stack.relay.port) as requested:
        session_path = f"/api/sessions/{created['id']}"
        eventually_sync(
            lambda: any(path.startswith(f"{session_path}/events?") for path in requested),
            timeout=20,
            what="the stream to retry into a 502",
        )
        # The stream gave up on the error: the page checks the session before a new one.
        eventually_sync(
            lambda: session_path in requested,
            timeout=20,
            what="the page to ask for the session after its stream's 502",
        )
    stack.relay.start()
    expect(banner).to_be_hidden(timeout=30_000)
    eventually_sync(
        lambda: stack.environment()["online"], timeout=30, what="the daemon to reconnect"
    )

    box.fill("after")
    box.press("Enter")
    expect(agent_texts(page)).to_have_text(["echo: before", "echo: between", "echo: after"])
    events = stack.wait_events(
        created["id"], lambda evs: sum(e["kind"] == "turn_result" for e in evs) == 4
    )
    expect(page.locator(".turn-end")).to_have_count(4)
    shown = [
        int(s)
        for s in page.locator("[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]
    assert sorted(shown) == [e["seq"] for e in events if e["kind"] != "status"]
    expect(page.locator(".msg.user .msg-text")).to_have_text(
        ["before", "sleep 30", "between", "after"]
    )


def test_no_sideways_scrolling_on_a_phone_and_a_centred_desktop(
    tmp_path: Path, browsing: Browsing, artifacts: Path
) -> None:
    long_name = "build-box-" + "x" * 70
    stack = start_stack(tmp_path, "--capacity", "1", name=long_name)
    try:
        unbroken = "y" * 300
        created = stack.api.post(
            f"/api/environments/{stack.environment_id}/sessions", json={"prompt": unbroken}
        ).json()
        phone = browsing.sign_in(stack, **PHONE)
        expect(phone.locator(".session-row")).to_have_count(1)
        expect(phone.locator(f'[data-environment-id="{stack.environment_id}"]')).to_contain_text(
            "1/1"
        )
        no_horizontal_scroll(phone)

        # At capacity: the relay's 409 message is shown, and nothing is started.
        phone.get_by_role("button", name="New session").tap()
        phone.get_by_label("First prompt").fill("one too many")
        phone.get_by_role("button", name="Start session").tap()
        error = phone.get_by_role("alert").filter(has_text="At capacity")
        expect(error).to_contain_text("capacity")
        expect(phone).to_have_url(re.compile(r"/\?new$"))
        no_horizontal_scroll(phone)
        phone.screenshot(path=artifacts / "phone-at-capacity.png")

        phone.goto(created["url"])
        expect(agent_texts(phone)).to_have_text([f"echo: {unbroken}"])
        box = phone.get_by_label("Message")
        box.fill(f"write {stack.project}/{'z' * 120}.txt {'w' * 400}")
        box.press("Enter")
        expect(phone.get_by_role("group", name="Permission request: Write")).to_be_visible()
        no_horizontal_scroll(phone)
        phone.locator("details.tool summary").tap()
        no_horizontal_scroll(phone)
        phone.screenshot(path=artifacts / "phone-long-lines.png", full_page=True)

        desktop = browsing.sign_in(stack, **DESKTOP)
        no_horizontal_scroll(desktop)
        desktop.screenshot(path=artifacts / "desktop-home.png")
        desktop.goto(created["url"])
        expect(desktop.get_by_role("group", name="Permission request: Write")).to_be_visible()
        no_horizontal_scroll(desktop)
        box_ = desktop.locator("main").bounding_box()
        assert box_ is not None
        assert box_["width"] <= 800
        assert abs(box_["x"] - (1280 - box_["x"] - box_["width"])) <= 2  # centred
        desktop.screenshot(path=artifacts / "desktop-session.png")
    finally:
        stack.close()
