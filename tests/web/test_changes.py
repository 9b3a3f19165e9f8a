"""A session's work reviewed and landed from the web app (Chromium via Playwright; relay,
daemon and the tiny agent real processes, the daemon in worktree mode on a real git
repository): the changes view lists exactly the files the session changed (a rename, a
binary, a 5 MB file, a hostile name), shows a diff with line numbers and signs that wraps
on a phone, commits and merges from the phone (a refusal shows its files) and pushes from
the desktop, and the conversation shows each action; a kept worktree is listed on the home
page and discarded only once the dialog naming its loss is confirmed."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.waiting import eventually_sync

from .browser import DESKTOP, PHONE, Page, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack, start_stack

#: A name git and the daemon take as only a name: a leading dash, a space, a newline, ü.
HOSTILE = "-rf new\nline ü.txt"
#: As the app shows it: the newline escaped, as git quotes it.
HOSTILE_SHOWN = "-rf new\\nline ü.txt"
LONG_LINE = "print(" + ", ".join(f"'a long line that wraps {i}'" for i in range(12)) + ")"
FIVE_MB = 5 * 1024 * 1024
#: What the session's work is, as the changes view must list it.
EXPECTED = {
    "big.log": "added",
    "docs/read me.md": "added",
    "gone.txt": "deleted",
    "lib.py": "modified",
    "logo.png": "added",
    "notes.md": "added",
    "renamed.txt": "renamed",
    HOSTILE: "added",
}


#: How the conversation names the web app on this test's browser.
FROM_BROWSER = r"from the web app on (Headless )?Chrome on \w+"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def origin_of(project: Path) -> Path:
    """The project's remote: a bare repository beside it."""
    return project.parent / "origin.git"


def project_repo(path: Path) -> None:
    git(path.parent, "init", "-q", "--bare", str(origin_of(path)))
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", str(origin_of(path)))
    git(path, "config", "user.name", "Dev")
    git(path, "config", "user.email", "dev@example.invalid")
    (path / "lib.py").write_text("one\ntwo\nthree\n")
    (path / "gone.txt").write_text("bye\n")
    (path / "old name.txt").write_text("".join(f"line {i}\n" for i in range(30)))
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "start")


@pytest.fixture(scope="module")
def git_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the file: each test works in sessions of its own."""
    running = start_stack(
        tmp_path_factory.mktemp("changes"), "--spawn", "worktree", "--spare-worktrees", "0",
        prepare_project=project_repo,
    )  # fmt: skip
    try:
        yield running
    finally:
        running.close()


def session_state(stack: Stack, session_id: str) -> str:
    state: str = stack.api.get(f"/api/sessions/{session_id}").json()["state"]
    return state


def new_session(stack: Stack, title: str) -> tuple[str, Path]:
    """A started, idle session; its id and its worktree."""
    created = stack.api.post(
        f"/api/environments/{stack.environment_id}/sessions", json={"title": title}
    )
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    events = stack.wait_events(
        session_id, lambda evs: any(e["kind"] == "session_started" for e in evs)
    )
    cwd = Path(next(e for e in events if e["kind"] == "session_started")["data"]["cwd"])
    eventually_sync(
        lambda: session_state(stack, session_id) == "idle", timeout=20, what="an idle session"
    )
    return session_id, cwd


def make_work(cwd: Path) -> None:
    """The session's work (its hands: this test): edit, add, delete, rename (committed),
    a binary file, a 5 MB one and a hostile name."""
    git(cwd, "rm", "-q", "gone.txt")
    git(cwd, "mv", "old name.txt", "renamed.txt")
    git(cwd, "commit", "-q", "-m", "tidy up")
    (cwd / "lib.py").write_text(f"one\nTWO\nthree\n{LONG_LINE}\n")
    (cwd / "notes.md").write_text("hello\n")
    (cwd / "docs").mkdir()
    (cwd / "docs" / "read me.md").write_text("# Read me\n")
    (cwd / "logo.png").write_bytes(b"PNG\x00\x01\x02")
    (cwd / "big.log").write_bytes((b"a log line\n" * (FIVE_MB // 11 + 1))[:FIVE_MB])
    (cwd / HOSTILE).write_text("hostile\n")


def listed(page: Page) -> dict[str, str]:
    rows = page.locator(".file-row")
    pairs: list[list[str]] = rows.evaluate_all(
        "rows => rows.map(r => [r.dataset.path, r.dataset.status])"
    )
    return dict((path, status) for path, status in pairs)


def diff_rows(page: Page) -> list[list[str]]:
    """Each diff line as [old number, new number, sign, text]."""
    rows: list[list[str]] = page.locator("table.diff tr.dl").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    )
    return rows


def file_row(page: Page, shown: str) -> Any:
    return page.locator(".file-row").filter(has=page.locator(".file-path", has_text=shown))


def open_file(page: Page, shown: str) -> None:
    file_row(page, shown).click()
    expect(page.locator(".diff-title")).to_have_text(shown)


LIB_DIFF = [
    ["1", "1", "", "one"],
    ["2", "", "-", "two"],
    ["", "2", "+", "TWO"],
    ["3", "3", "", "three"],
    ["", "4", "+", LONG_LINE],
]


def test_a_session_s_work_is_reviewed_committed_and_merged_from_the_phone(
    git_stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    stack, repo = git_stack, git_stack.project
    session_id, cwd = new_session(stack, "land me")
    make_work(cwd)
    url = stack.relay.url

    phone = browsing.sign_in(stack, **PHONE)
    phone.goto(f"{url}/s/{session_id}")
    expect(phone.get_by_role("heading", name="land me")).to_be_visible()
    no_horizontal_scroll(phone)
    phone.get_by_role("link", name="Changes").tap()
    expect(phone).to_have_url(f"{url}/?changes={session_id}")
    expect(phone.locator(".file-row")).to_have_count(len(EXPECTED))
    assert listed(phone) == EXPECTED
    head = phone.locator(".changes-head")
    expect(head).to_contain_text("rcd/land-me → main")
    expect(head.locator(".fact")).to_have_text(
        ["1 commit", "uncommitted changes", re.compile(r"since [0-9a-f]{7}")]
    )
    expect(file_row(phone, "renamed.txt")).to_contain_text("from old name.txt")
    expect(file_row(phone, "lib.py").locator(".file-stats")).to_have_text("+2 \u22121")
    expect(file_row(phone, "logo.png").locator(".file-stats")).to_have_text("binary · 6 B")
    expect(file_row(phone, "big.log").locator(".file-size")).to_have_text("5.0 MB")
    expect(file_row(phone, "read me.md")).to_contain_text("docs/read me.md")
    # Only what may be done now: the session runs, and has uncommitted work.
    expect(phone.get_by_label("Commit message")).to_have_value("land me")
    expect(phone.locator(".land button")).to_have_text(
        ["Commit", "Ask the agent to commit", "Push to origin"]
    )
    no_horizontal_scroll(phone)
    phone.screenshot(path=artifacts / "phone-changes.png", full_page=True)

    # A text diff: numbers, signs, the long line wrapped; the URL keeps it over a reload.
    open_file(phone, "lib.py")
    expect(phone.locator("table.diff tr.dl")).to_have_count(len(LIB_DIFF))
    assert diff_rows(phone) == LIB_DIFF
    expect(phone.locator("table.diff tr.hunk")).to_have_text(re.compile(r"^@@ -1,3 \+1,4 @@"))
    no_horizontal_scroll(phone)
    phone.screenshot(path=artifacts / "phone-diff.png", full_page=True)
    phone.reload()
    expect(phone.locator("table.diff tr.dl")).to_have_count(len(LIB_DIFF))
    expect(phone.locator(".file-list")).to_be_hidden()
    phone.locator(".all-files").tap()
    expect(phone.locator(".file-list")).to_be_visible()

    open_file(phone, "logo.png")
    expect(phone.locator(".diff-summary")).to_have_text("Not shown: binary, 6 B")
    phone.go_back()
    open_file(phone, "big.log")
    expect(phone.locator(".diff-summary")).to_have_text("Not shown: large, 5.0 MB")
    phone.go_back()
    open_file(phone, HOSTILE_SHOWN)
    expect(phone.locator("table.diff tr.dl")).to_have_count(1)
    assert diff_rows(phone) == [["", "1", "+", "hostile"]]
    no_horizontal_scroll(phone)
    phone.go_back()

    # The desktop: list and diff side by side.
    desktop = browsing.sign_in(stack, **DESKTOP)
    desktop.goto(f"{url}/?changes={session_id}")
    expect(desktop.locator(".file-row")).to_have_count(len(EXPECTED))
    desktop.screenshot(path=artifacts / "desktop-changes.png")
    open_file(desktop, "lib.py")
    expect(desktop.locator("table.diff tr.dl")).to_have_count(len(LIB_DIFF))
    expect(desktop.locator(".file-list")).to_be_visible()
    expect(file_row(desktop, "lib.py")).to_have_attribute("aria-current", "true")
    desktop.screenshot(path=artifacts / "desktop-diff.png")

    # Asking the agent is a chat message; it answers in the conversation.
    phone.get_by_role("button", name="Ask the agent to commit").tap()
    expect(phone.locator(".outcome")).to_contain_text("Asked the agent to commit")
    stack.wait_events(
        session_id,
        lambda evs: (
            any(
                e["kind"] == "user_message" and "commit all of your work" in e["data"]["text"]
                for e in evs
            )
            and any(e["kind"] == "turn_result" for e in evs)
        ),
    )
    eventually_sync(lambda: session_state(stack, session_id) == "idle", timeout=20, what="idle")

    # Commit from the phone.
    phone.get_by_label("Commit message").fill("Land the session")
    phone.get_by_role("button", name="Commit", exact=True).tap()
    expect(phone.locator(".outcome")).to_contain_text("committed")
    assert git(cwd, "log", "-1", "--format=%s") == "Land the session"
    expect(head.locator(".fact")).to_have_text(["2 commits", re.compile("^since")])
    expect(phone.locator(".land button")).to_have_text(["Merge into main", "Push to origin"])
    merge = phone.get_by_role("button", name="Merge into main")

    # Pushed from the desktop, once it reads the changes again.
    desktop.get_by_role("button", name="Refresh").click()
    desktop.get_by_role("button", name="Push to origin").click()
    expect(desktop.locator(".outcome")).to_contain_text("pushed rcd/land-me to origin")
    pushed = git(origin_of(repo), "rev-parse", "refs/heads/rcd/land-me")
    assert pushed == git(cwd, "rev-parse", "HEAD")

    # A refusal is shown where the user acted, with its files; nothing changed.
    (repo / "lib.py").write_text("mine, not committed\n")
    before = git(repo, "rev-parse", "main")
    merge.tap()
    refusal = phone.locator(".refusal").filter(has_text="lib.py")
    expect(refusal.locator(".refusal-files li")).to_have_text(["lib.py"])
    assert git(repo, "rev-parse", "main") == before
    no_horizontal_scroll(phone)
    phone.screenshot(path=artifacts / "phone-merge-refused.png", full_page=True)

    git(repo, "restore", "lib.py")
    merge.tap()
    expect(phone.locator(".outcome")).to_contain_text("fast-forwarded main")
    assert git(repo, "rev-parse", "main") == git(cwd, "rev-parse", "HEAD")
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "notes.md").read_text() == "hello\n"
    assert (repo / HOSTILE).read_text() == "hostile\n"

    # The conversation says what was done, and from where.
    phone.goto(f"{url}/s/{session_id}")
    notes = phone.locator(".note.git-action")
    expect(notes).to_have_count(3)
    expect(notes).to_have_text([
        # The browser that acted, named as on the sign-ins page.
        re.compile(rf"^committed [0-9a-f]{{7,}} on rcd/land-me — {FROM_BROWSER}$"),
        re.compile(rf"^pushed rcd/land-me to origin — {FROM_BROWSER}$"),
        re.compile(rf"^fast-forwarded main to [0-9a-f]{{7,}} \(rcd/land-me\) — {FROM_BROWSER}$"),
    ])  # fmt: skip
    phone.screenshot(path=artifacts / "phone-git-actions.png")


def test_a_kept_worktree_is_listed_and_discarded_only_once_confirmed(
    git_stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    stack, repo = git_stack, git_stack.project
    session_id, cwd = new_session(stack, "throw away")
    branch = "rcd/throw-away"
    (cwd / "wip.txt").write_text("unfinished\n")
    assert stack.api.post(f"/api/sessions/{session_id}/stop").status_code == 202
    events = stack.wait_events(
        session_id, lambda evs: any(e["kind"] == "session_ended" for e in evs)
    )
    ended = next(e for e in events if e["kind"] == "session_ended")["data"]
    assert ended["worktree_kept"] is True, ended
    url = stack.relay.url

    phone = browsing.sign_in(stack, **PHONE)
    kept = phone.locator(f'[data-environment-id="{stack.environment_id}"] .kept-row')
    expect(kept).to_have_count(1)
    expect(kept.locator(".kept-branch")).to_have_text(branch)
    expect(kept.locator(".kept-reasons")).to_contain_text("untracked files")
    no_horizontal_scroll(phone)
    phone.screenshot(path=artifacts / "phone-kept-worktrees.png", full_page=True)
    kept.get_by_role("link", name=f"Review {branch}").tap()
    expect(phone).to_have_url(f"{url}/?changes={session_id}")
    expect(phone.locator(".file-row")).to_have_count(1)
    assert listed(phone) == {"wip.txt": "added"}

    # Cancelled: nothing happens.
    phone.get_by_role("button", name="Discard…").tap()
    dialog = phone.get_by_role("dialog", name="Discard this work?")
    expect(dialog.locator(".loss")).to_have_text("1 uncommitted file(s): wip.txt")
    expect(dialog).to_contain_text(branch)
    phone.screenshot(path=artifacts / "phone-discard-dialog.png")
    dialog.get_by_role("button", name="Cancel").tap()
    expect(dialog).to_have_count(0)
    expect(phone.get_by_role("button", name="Discard…")).to_be_enabled()
    assert cwd.is_dir() and git(repo, "branch", "--list", branch) != ""

    # Confirmed, through the worktree's own route (as for one no session claims).
    phone.goto(f"{url}/?worktree={cwd.name}&env={stack.environment_id}")
    expect(phone.locator(".changes-head")).to_contain_text(branch)
    assert listed(phone) == {"wip.txt": "added"}
    phone.get_by_role("button", name="Discard…").tap()
    phone.get_by_role("dialog").get_by_role("button", name="Discard", exact=True).tap()
    expect(phone.locator(".outcome")).to_contain_text(f"discarded {branch}")
    expect(phone.locator(".changes-empty")).to_contain_text("Nothing left to review")
    assert not cwd.exists()
    assert git(repo, "branch", "--list", branch) == ""
    no_horizontal_scroll(phone)

    # The session's log has it; the home page lists it no more once the daemon answers.
    phone.goto(f"{url}/s/{session_id}")
    expect(phone.locator(".note.git-action")).to_contain_text(f"discarded {branch}")
    with phone.expect_response(lambda r: r.url.endswith("/worktrees") and r.ok):
        phone.goto(f"{url}/")
    expect(phone.locator(".kept-row")).to_have_count(0)
    expect(phone.locator(".kept")).to_be_hidden()
