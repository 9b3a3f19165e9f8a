"""Approval grants from the phone (Chromium via Playwright; the real ``claude`` CLI against
the fake Messages API, relay and daemon real processes): "Allow for a while" on a
permission card allows this Write and grants edits under its directory for 10 minutes; the
next Write there runs without a card, shown as allowed by that grant; the grant is listed
with its time left, revoked from the phone, and the next Write asks again."""

from __future__ import annotations

from pathlib import Path

from testkit.waiting import eventually_sync

from .browser import PHONE, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack
from .test_web_app import start_from_phone


def test_allow_for_a_while_from_the_card_then_revoke_it_on_the_phone(
    claude_stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    stack = claude_stack
    src = stack.project / "src"
    src.mkdir()
    phone = browsing.sign_in(stack, **PHONE)
    session_id = start_from_phone(phone, f"write {src}/a.txt one")

    card = phone.locator(".perm")
    expect(card).to_have_count(1)
    card.get_by_text("Allow for a while…").tap()
    expect(card.locator(".grant-offer")).to_have_text(
        "Allow Edit, MultiEdit, Write under src/ without asking"
    )
    card.get_by_label("For how long").select_option("10")
    phone.screenshot(path=artifacts / "phone-grant-offer.png", full_page=True)
    no_horizontal_scroll(phone)
    card.get_by_role("button", name="Allow for this long").tap()
    expect(card.locator(".perm-outcome")).to_contain_text("Allowed")
    eventually_sync(lambda: (src / "a.txt").exists(), timeout=20, what="the first write")

    (grant,) = stack.api.get(f"/api/environments/{stack.environment_id}/grants").json()["grants"]
    assert grant["tools"] == ["Edit", "MultiEdit", "Write"] and grant["path"] == "src"
    assert grant["session_id"] == session_id
    assert grant["expires_at"] - grant["granted_at"] == 600
    listed = phone.locator(".grants .grant")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("Edit, MultiEdit, Write under src/")
    expect(listed).to_contain_text("this session · 10 min left · by the web app")

    box = phone.get_by_label("Message")
    box.fill(f"write {src}/b.txt two")
    box.press("Enter")
    granted = phone.locator(".note.granted")
    expect(granted).to_have_text("✓ Allowed by a grant: Edit, MultiEdit, Write under src/")
    expect(card).to_have_count(1)  # no card: nobody was asked
    eventually_sync(lambda: (src / "b.txt").exists(), timeout=20, what="the granted write")
    events = stack.events(session_id)
    assert [e["data"].get("grant") for e in events if e["kind"] == "permission_resolved"] == [
        None,
        grant["id"],
    ]
    phone.screenshot(path=artifacts / "phone-granted.png", full_page=True)

    phone.locator(".grants").get_by_role("button", name="Revoke").tap()
    expect(phone.locator(".grants")).to_be_hidden()
    assert stack.api.get(f"/api/environments/{stack.environment_id}/grants").json() == {
        "grants": []
    }
    box.fill(f"write {src}/c.txt three")
    box.press("Enter")
    expect(card).to_have_count(2)  # asked again
    assert not (src / "c.txt").exists()
