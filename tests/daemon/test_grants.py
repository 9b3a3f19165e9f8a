"""Approval grants at the daemon: what a grant covers (never a path outside the session's
directory, links resolved; Bash only as a simple command of its words), and its end by the
daemon's own clock — a test clock here, with the real ``claude`` CLI against the fake
Messages API asking again once the grant has ended."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from common.agent_env import agent_environment
from daemon import Supervisor
from daemon.errors import ConfigError
from daemon.grants import covers, new_grant
from daemon.options import StartOptions
from daemon.settings import EnvironmentSettings, SettingsKeeper, Stored
from spawn import ClaudeCode
from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.waiting import eventually

NOW = 1_800_000_000.0


def grant(**scope: Any) -> wire.Grant:
    scope.setdefault("minutes", 10)
    return new_grant("grt_t", wire.GrantRequest(**scope), "phone", NOW)


def allowed(g: wire.Grant, tool: str, cwd: Path, *, session: str = "s1", **tool_input: Any) -> bool:
    return covers(g, session_id=session, cwd=str(cwd), tool=tool, tool_input=tool_input, now=NOW)


def test_file_tools_are_covered_inside_the_grants_path_only(tmp_path: Path) -> None:
    top = tmp_path / "project"
    (top / "src" / "deep").mkdir(parents=True)
    (top / "srcx").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (top / "src" / "out").symlink_to(outside)
    g = grant(tools=["Edit", "Write"], path="src/")
    assert allowed(g, "Write", top, file_path=str(top / "src" / "a.py"))
    assert allowed(g, "Edit", top, file_path="src/deep/b.py")  # relative to the session
    assert allowed(g, "Write", top, file_path=str(top / "src"))
    assert not allowed(g, "Write", top, file_path=str(top / "srcx" / "a.py"))  # not a prefix
    assert not allowed(g, "Write", top, file_path=str(top / "b.py"))
    assert not allowed(g, "Write", top, file_path=str(top / "src" / ".." / "b.py"))
    assert not allowed(g, "Write", top, file_path=str(top / "src" / "out" / "x"))  # a link out
    assert not allowed(g, "Write", top, file_path="~/.bashrc")
    assert not allowed(g, "Write", top, file_path="")
    assert not allowed(g, "Write", top)  # no path named: asked
    assert not allowed(g, "Read", top, file_path=str(top / "src" / "a.py"))  # not its tool
    assert not allowed(g, "Bash", top, command="ls")


def test_a_grant_never_leaves_the_session_directory(tmp_path: Path) -> None:
    top = tmp_path / "project"
    top.mkdir()
    (top / "up").symlink_to(tmp_path)
    whole = grant(tools=["Write", "Glob"])
    assert allowed(whole, "Write", top, file_path=str(top / "any" / "where.txt"))
    assert allowed(whole, "Glob", top)  # no path: the session's directory
    assert not allowed(whole, "Write", top, file_path=str(tmp_path / "x"))
    assert not allowed(whole, "Write", top, file_path=str(top / "up" / "x"))
    assert not allowed(whole, "Write", top, file_path="/etc/passwd")
    # A path that leads out through a link is refused when the grant is asked for... and
    # one that is made a link out afterwards covers nothing.
    with pytest.raises(ValueError):
        wire.GrantRequest(tools=["Write"], minutes=1, path="../x")
    with pytest.raises(ValueError):
        wire.GrantRequest(tools=["Write"], minutes=1, path="/etc")
    assert not allowed(
        grant(tools=["Write"], path="up"), "Write", top, file_path=str(top / "up" / "x")
    )


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.sampled_from(["src", "a", "..", ".", "up", "in", "b.txt"]), max_size=6))
def test_whatever_the_path_a_covered_one_is_inside(tmp_path_factory: Any, parts: list[str]) -> None:
    base = tmp_path_factory.getbasetemp() / "grants-property"
    top = base / "project"
    if not top.exists():
        (top / "src" / "a").mkdir(parents=True)
        (top / "src" / "up").symlink_to(base)
        (top / "src" / "in").symlink_to(top / "src" / "a")
    named = os.path.join(str(top), *parts)
    for scope in (None, "src", "src/a"):
        if allowed(grant(tools=["Write"], path=scope), "Write", top, file_path=named):
            resolved = Path(named).resolve()
            assert resolved.is_relative_to(top.resolve() / (scope or ""))


def test_bash_is_covered_as_a_simple_command_starting_with_its_words(tmp_path: Path) -> None:
    g = grant(tools=["Bash"], command="git   status")
    assert g.command == "git status"
    assert allowed(g, "Bash", tmp_path, command="git status")
    assert allowed(g, "Bash", tmp_path, command="git status -s 'a b'")
    assert not allowed(g, "Bash", tmp_path, command="git statusx")
    assert not allowed(g, "Bash", tmp_path, command="git log")
    for chained in (
        "git status; rm -rf /",
        "git status && curl x",
        "git status | sh",
        "git status > f",
        "git status $(rm x)",
        "git status `rm x`",
        "git status\nrm x",
        "git status 'unclosed",
    ):
        assert not allowed(g, "Bash", tmp_path, command=chained), chained
    any_command = grant(tools=["Bash"])
    assert allowed(any_command, "Bash", tmp_path, command="make test")
    assert not allowed(any_command, "Bash", tmp_path, command="make test; rm x")
    # A grant with a path cannot judge a command: asked.
    assert not allowed(grant(tools=["Bash"], path="src"), "Bash", tmp_path, command="ls")


def test_what_would_outlast_a_grant_is_always_asked(tmp_path: Path) -> None:
    """The agent's settings, git's hooks and config, .envrc, .mcp.json: a write there would
    keep allowing things after the grant ends, so no grant covers them."""
    top = tmp_path / "project"
    (top / "src").mkdir(parents=True)
    (top / "src" / "hooks").symlink_to(top / ".git")
    whole = grant(tools=["Write", "Edit", "Read"])
    for named in (
        ".claude/settings.local.json",
        ".claude/settings.json",
        ".CLAUDE/settings.json",
        ".git/hooks/pre-commit",
        ".git/config",
        "src/.git/config",
        "src/hooks/pre-commit",  # a link into .git
        ".mcp.json",
        ".envrc",
        ".rcd/worktrees/x/a.py",
    ):
        assert not allowed(whole, "Write", top, file_path=str(top / named)), named
    assert allowed(whole, "Write", top, file_path=str(top / "claude.md"))
    assert allowed(whole, "Write", top, file_path=str(top / "src" / "git.py"))


def test_glob_and_grep_patterns_stay_inside(tmp_path: Path) -> None:
    search = grant(tools=["Glob", "Grep"], path="src")
    (tmp_path / "src").mkdir()
    assert allowed(search, "Glob", tmp_path, path="src", pattern="**/*.py")
    assert allowed(search, "Grep", tmp_path, path="src", pattern="TODO", glob="*.py")
    assert not allowed(search, "Glob", tmp_path, path="src", pattern="/etc/**/*")
    assert not allowed(search, "Glob", tmp_path, path="src", pattern="../../**/*.pem")
    assert not allowed(search, "Glob", tmp_path, path="src", pattern="~/.ssh/*")
    assert not allowed(search, "Grep", tmp_path, path="src", pattern="x", glob="../*")
    assert not allowed(search, "Glob", tmp_path, path="src", pattern=["not", "text"])


def test_a_command_prefix_keeps_its_words_and_bad_ones_are_refused(tmp_path: Path) -> None:
    quoted = grant(tools=["Bash"], command="git 'commit -m'")
    assert quoted.command == "git 'commit -m'"  # two words, as the shell splits it
    assert allowed(quoted, "Bash", tmp_path, command="git 'commit -m' x")
    assert not allowed(quoted, "Bash", tmp_path, command="git commit -m x")
    for bad in ("'", "ls; rm", "a && b", "$(x)", "  ", "ls\nrm"):
        with pytest.raises(ValueError):
            wire.GrantRequest(tools=["Bash"], minutes=1, command=bad)
    # One kept before these checks: it covers nothing and breaks nothing.
    odd = attrs.evolve(grant(tools=["Bash"]), command="'")
    assert not allowed(odd, "Bash", tmp_path, command="ls")
    assert not allowed(grant(tools=["Bash"]), "Bash", tmp_path, command="echo 'unclosed")


def test_other_tools_by_name_and_scope_by_session_and_time(tmp_path: Path) -> None:
    web = grant(tools=["WebFetch"])
    assert allowed(web, "WebFetch", tmp_path, url="https://example.org")
    assert not allowed(grant(tools=["WebFetch"], path="src"), "WebFetch", tmp_path, url="x")
    one = grant(tools=["Write"], session_id="s1")
    assert allowed(one, "Write", tmp_path, file_path="a")
    assert not allowed(one, "Write", tmp_path, session="s2", file_path="a")
    assert allowed(grant(tools=["Write"]), "Write", tmp_path, session="s2", file_path="a")
    ended = attrs.evolve(web, expires_at=NOW)
    assert not allowed(ended, "WebFetch", tmp_path, url="x")
    assert web.describe() == "WebFetch for 10 min"
    assert (
        grant(tools=["Edit", "Write"], path="src/").describe() == "Edit, Write under src for 10 min"
    )


def test_settings_take_revoke_and_keep_grants(tmp_path: Path) -> None:
    options = StartOptions(directory=tmp_path)
    kept = EnvironmentSettings(path=tmp_path / "settings.json", options=options)
    request = wire.GrantRequest(tools=["Write"], minutes=5)
    assert kept.take_grant("grt_a", request, "phone", NOW).startswith("grant grt_a: Write")
    assert kept.take_grant("grt_a", request, "phone", NOW) == ""  # the directive again
    text = (tmp_path / "settings.json").read_text()
    reread: Stored = wire.decode(Stored, wire.strict_json.loads(text))
    assert [g.id for g in reread.grants] == ["grt_a"]
    assert [g.id for g in kept.view(NOW).grants] == ["grt_a"]
    assert kept.view(NOW + 300).grants == []  # ended: not shown
    with pytest.raises(ConfigError, match="no grant grt_a in force"):
        kept.revoke_grant("grt_a", "laptop", NOW + 300)
    assert kept.revoke_grant("grt_a", "laptop", NOW) == "revoked grant grt_a"
    assert kept.stored.changes[-1].by == "laptop"
    for n in range(wire.grants.MAX_GRANTS):
        kept.take_grant(f"grt_{n}", request, "phone", NOW)
    with pytest.raises(ConfigError, match="revoke one first"):
        kept.take_grant("grt_more", request, "phone", NOW)


@attrs.define
class Reports:
    """The daemon's relay client as the keeper sees it: what it reported."""

    takes_settings: bool = True
    takes_grants: bool = True
    takes_agents: bool = True
    views: list[wire.SettingsView] = attrs.Factory(list)

    async def post_settings(self, view: wire.SettingsView) -> None:
        self.views.append(view)


@attrs.define
class Log:
    events: dict[str, list[wire.Event]] = attrs.Factory(lambda: defaultdict(list))

    def publish(self, session_id: str, event: wire.Event) -> None:
        self.events[session_id].append(event)

    def publish_partial(self, session_id: str, piece: object) -> None:
        pass

    def of(self, session_id: str, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events[session_id] if e.kind == kind]


async def test_a_grant_ends_by_the_daemons_clock_and_the_cli_is_asked_again(
    tmp_path: Path,
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    (project / "src").mkdir(parents=True)
    now = [NOW]
    log, reports = Log(), Reports()
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        supervisor = Supervisor(
            adapter=ClaudeCode(binary=find_claude()),
            directory=project,
            spawn="same-dir",
            capacity=2,
            uplink=log,
        )

        async def reregister() -> None:
            pass

        keeper = SettingsKeeper(
            settings=EnvironmentSettings(
                path=tmp_path / "settings.json", options=StartOptions(directory=project)
            ),
            supervisor=supervisor,
            client=reports,  # type: ignore[arg-type]
            base_env={**agent_environment(os.environ), **claude_env(home, base_url)},
            reregister=reregister,
            nursery=nursery,
            clock=lambda: now[0],
            recheck=0.05,
        )
        keeper.configure()
        supervisor.approve = keeper.approve
        await nursery.start(supervisor.run)
        nursery.start_soon(keeper.expire_grants)
        keeper.update(
            wire.UpdateSettings(
                id="set_1",
                update=wire.SettingsUpdate(),
                origin="phone",
                grant=wire.GrantRequest(tools=["Edit", "Write"], path="src/", minutes=10),
                grant_id="grt_1",
            )
        )
        await eventually(
            lambda: bool(reports.views and reports.views[-1].grants), timeout=10, what="grant"
        )
        assert reports.views[-1].grants[0].expires_at == NOW + 600

        async def turn(n: int, text: str) -> None:
            if n == 1:
                supervisor.apply(1, wire.StartSession(session_id="s1", prompt=text))
            else:
                message = wire.SendMessage(session_id="s1", input_id=f"m{n}", text=text, origin="t")
                supervisor.apply(n, message)

            def done_or_asked() -> bool:
                return len(log.of("s1", "turn_result")) >= n or len(
                    log.of("s1", "permission_request")
                ) > len([r for r in log.of("s1", "permission_resolved") if r["origin"] != "grant"])

            await eventually(done_or_asked, timeout=30, what=f"turn {n}")

        await turn(1, f"write {project}/src/a.txt one")
        assert log.of("s1", "permission_request") == []
        assert [r["grant"] for r in log.of("s1", "permission_resolved")] == ["grt_1"]
        assert (project / "src" / "a.txt").read_text() == "one"

        now[0] = NOW + 599  # a second before its end
        await turn(2, f"write {project}/src/b.txt two")
        assert log.of("s1", "permission_request") == []
        assert (project / "src" / "b.txt").read_text() == "two"

        now[0] = NOW + 600  # its end, by the daemon's clock
        await turn(3, f"write {project}/src/c.txt three")
        (asked,) = log.of("s1", "permission_request")
        assert asked["tool"] == "Write"
        supervisor.apply(
            4,
            wire.DecidePermission(
                session_id="s1", request_id=asked["request_id"], decision="deny", origin="t"
            ),
        )
        await eventually(lambda: len(log.of("s1", "turn_result")) >= 3, timeout=30, what="turn 3")
        assert not (project / "src" / "c.txt").exists()
        # The clients' list follows: the ended grant is reported gone.
        await eventually(
            lambda: reports.views[-1].grants == [], timeout=10, what="the end reported"
        )
        await supervisor.stop_all()
        nursery.cancel_scope.cancel()
