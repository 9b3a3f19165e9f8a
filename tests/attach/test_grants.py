"""Approval grants in ``rcd attach`` (real relay and daemon, the scripted agent): a Write
answered by a grant shows as allowed by it, ``/grants`` lists what is in force for the
session with its time left, ``/revoke ID`` ends it (the next Write asks), and a wrong id is
one line naming what was wrong."""

from __future__ import annotations

from pathlib import Path

import trio

from testkit.harness import REPO, Daemon, Relay
from tests.attach.conftest import device_token, new_session
from tests.attach.pty_client import GUARD, attach_argv


async def attach_lines(argv: list[str], env: dict[str, str], typed: str) -> str:
    """``rcd attach`` off a terminal with ``typed`` as its input: what it printed."""
    with trio.fail_after(GUARD):
        result = await trio.run_process(
            argv, env=env, stdin=typed.encode(), capture_stdout=True, capture_stderr=True,
            check=False, cwd=str(REPO),
        )  # fmt: skip
    assert result.returncode == 0, result
    return result.stdout.decode()


async def test_grants_are_shown_listed_and_revoked_from_attach(
    relay: Relay, daemon: Daemon, attach_env: dict[str, str], tmp_path: Path
) -> None:
    project = daemon.directory
    session_id = await new_session(relay, daemon, "hello", "granted")
    grants = f"/api/environments/{daemon.environment_id}/grants"
    made = await relay.client.post(
        grants, json={"tools": ["Write"], "path": "notes", "minutes": 30, "session_id": session_id}
    )
    assert made.status_code == 201, made.text
    grant_id = made.json()["id"]
    (project / "notes").mkdir()
    message = {"id": "m1", "text": f"write {project}/notes/a.txt hi"}
    assert (
        await relay.client.post(f"/api/sessions/{session_id}/messages", json=message)
    ).is_success
    await relay.wait_kind(session_id, "turn_result", 2)
    assert (project / "notes" / "a.txt").read_text() == "hi"

    token = await device_token(relay, "script")
    argv = attach_argv(session_id, "--relay", relay.url, "--token", token)
    out = await attach_lines(argv, attach_env, "/grants\n")
    assert f"✓ allowed by grant {grant_id}\n" in out  # nobody was asked: no request shown
    listed = out.split("live from here ──\n", 1)[1]
    assert listed.startswith("allowed without asking:\n"), out
    assert f"  {grant_id}  Write under notes/ · this session · 30 min left · by tests" in listed
    assert "/revoke ID ends one at once" in listed

    out = await attach_lines(argv, attach_env, f"/revoke {grant_id}\n")
    assert out.endswith(f"revoked {grant_id}: what it covered asks again\n"), out
    assert (await relay.client.get(grants)).json() == {"grants": []}
    out = await attach_lines(argv, attach_env, "/grants\n")
    assert out.endswith("no grants in force for this session: every tool use asks\n"), out
    out = await attach_lines(argv, attach_env, f"/revoke {grant_id}\n")
    assert out.endswith(f"not revoked: no grant {grant_id} in force: it ended, or was revoked\n")
    out = await attach_lines(argv, attach_env, "/revoke\n")
    assert out.endswith("/revoke needs a grant's id: /grants lists them\n"), out

    message = {"id": "m2", "text": f"write {project}/notes/b.txt again"}
    assert (
        await relay.client.post(f"/api/sessions/{session_id}/messages", json=message)
    ).is_success
    await relay.wait_kind(session_id, "permission_request")
