"""Approval grants from the phone (Chromium via Playwright; the real ``claude`` CLI against
the fake Messages API, relay and daemon real processes): "Allow for a while" on a
permission card allows this Write and grants edits under its directory for 10 minutes; the
next Write there runs without a card, shown as allowed by that grant; the grant is listed
with its time left, revoked from the phone, and the next Write asks again."""

from __future__ import annotations

from pathlib import Path

import wire
from daemon.grants import covers, new_grant
from testkit.waiting import eventually_sync

from .browser import DESKTOP, PHONE, expect
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


def test_every_grant_a_card_offers_is_valid_and_covers_its_request(
    stack: Stack, browsing: Browsing, tmp_path: Path
) -> None:
    """``suggestGrant`` in grants.js against the relay's check and the daemon's rule: what
    a card offers is a grant the relay takes, and it covers the request it is offered for;
    for what no grant could cover (a file outside the directory, the agent's settings, a
    command with shell syntax or quotes) it offers nothing."""
    cwd = tmp_path / "work"
    (cwd / "src").mkdir(parents=True)
    requests = [
        ("Write", {"file_path": f"{cwd}/src/a.py"}),
        ("Edit", {"file_path": f"{cwd}/top.py"}),
        ("Write", {"file_path": "src/deep/b.py"}),
        ("Read", {"file_path": f"{cwd}/src/a.py"}),
        ("Write", {"file_path": "~/.bashrc"}),
        ("Write", {"file_path": "/etc/passwd"}),
        ("Write", {"file_path": f"{cwd}/../x"}),
        ("Write", {"file_path": f"{cwd}/.claude/settings.local.json"}),
        ("Edit", {"file_path": f"{cwd}/.git/hooks/pre-commit"}),
        ("Bash", {"command": "git status -s"}),
        ("Bash", {"command": "pytest -q tests"}),
        ("Bash", {"command": "'./run tests.sh' --fast"}),
        ("Bash", {"command": "make; rm -rf /"}),
        ("Bash", {"command": "echo $HOME"}),
        ("WebFetch", {"url": "https://example.org"}),
    ]
    page = browsing.sign_in(stack, **DESKTOP)
    offers = page.evaluate(
        """async ([requests, cwd]) => {
          const { suggestGrant } = await import('/assets/grants.js');
          return requests.map(([tool, input]) => suggestGrant({ tool, input }, cwd));
        }""",
        [requests, str(cwd)],
    )
    offered = {}
    for (tool, tool_input), offer in zip(requests, offers, strict=True):
        key = f"{tool} {next(iter(tool_input.values()))}"
        offered[key] = offer and {k: offer[k] for k in ("tools", "path", "command") if k in offer}
        if offer is None:
            continue
        body = {k: offer[k] for k in ("tools", "path", "command") if offer.get(k)}
        grant = new_grant("grt_t", wire.GrantRequest(minutes=1, **body), "web", 0.0)
        assert covers(
            grant, session_id="s", cwd=str(cwd), tool=tool, tool_input=tool_input, now=1.0
        ), (key, offer)
    edits = ["Edit", "MultiEdit", "Write"]
    assert offered == {
        f"Write {cwd}/src/a.py": {"tools": edits, "path": "src"},
        f"Edit {cwd}/top.py": {"tools": edits, "path": ""},
        "Write src/deep/b.py": {"tools": edits, "path": "src/deep"},
        f"Read {cwd}/src/a.py": {"tools": ["Read"], "path": "src"},
        "Write ~/.bashrc": None,
        "Write /etc/passwd": None,
        f"Write {cwd}/../x": None,
        f"Write {cwd}/.claude/settings.local.json": None,
        f"Edit {cwd}/.git/hooks/pre-commit": None,
        "Bash git status -s": {"tools": ["Bash"], "command": "git status"},
        "Bash pytest -q tests": {"tools": ["Bash"], "command": "pytest"},
        "Bash './run tests.sh' --fast": None,
        "Bash make; rm -rf /": None,
        "Bash echo $HOME": None,
        "WebFetch https://example.org": {"tools": ["WebFetch"]},
    }
