"""The control sockets' directory is private and this user's own, whoever got to /tmp first."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from daemon.errors import ConfigError
from daemon.paths import control_socket_path, runtime_dir
from testkit import privileges
from testkit.harness import home_env, rcd, start_daemon, start_relay

OTHER_UID = 65534  # nobody


@pytest.fixture
def no_xdg_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $XDG_RUNTIME_DIR; a temporary directory (sticky, world-writable: /tmp's mode) and
    a state dir of this test's own. Returns the temporary directory."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_fallback_is_made_private(no_xdg_runtime: Path) -> None:
    root = runtime_dir()
    assert root == no_xdg_runtime / f"rcd-{os.getuid()}"
    assert mode(root) == 0o700 and os.lstat(root).st_uid == os.getuid()


def test_an_own_directory_nobody_else_could_write_is_tightened(no_xdg_runtime: Path) -> None:
    shared = no_xdg_runtime / f"rcd-{os.getuid()}"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert runtime_dir() == shared
    assert mode(shared) == 0o700


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: (p.mkdir(), p.chmod(0o777)), "writable by other users (mode 0777"),
        (lambda p: (p.mkdir(), p.chmod(0o770)), "writable by other users (mode 0770"),
        (lambda p: p.symlink_to(p.parent), "is a symbolic link"),
        (lambda p: p.write_text("x"), "is not a directory"),
    ],
)
def test_an_unsafe_fallback_is_not_used(
    no_xdg_runtime: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: object,
    why: str,
) -> None:
    shared = no_xdg_runtime / f"rcd-{os.getuid()}"
    make(shared)  # type: ignore[operator]
    before = os.lstat(shared)
    root = runtime_dir()
    assert root == tmp_path / "state" / "rcd" / "run"
    assert mode(root) == 0o700
    after = os.lstat(shared)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)  # left alone
    err = capsys.readouterr().err
    assert f"not using {shared}" in err and why in err and str(root) in err


def needs_root() -> None:
    privileges.needs_root("to give a directory to another user")


def test_a_fallback_made_by_another_user_is_not_used(
    no_xdg_runtime: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_root()
    shared = no_xdg_runtime / f"rcd-{os.getuid()}"
    shared.mkdir(mode=0o700)
    os.chown(shared, OTHER_UID, OTHER_UID)
    assert control_socket_path(tmp_path).parent == tmp_path / "state" / "rcd" / "run"
    assert list(shared.iterdir()) == [] and os.lstat(shared).st_uid == OTHER_UID
    assert f"belongs to another user (uid {OTHER_UID}" in capsys.readouterr().err


def test_an_xdg_runtime_dir_not_ours_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    needs_root()
    base = tmp_path / "run"
    (base / "rcd").mkdir(parents=True, mode=0o700)
    os.chown(base / "rcd", OTHER_UID, OTHER_UID)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    with pytest.raises(ConfigError, match=r"belongs to another user.*set XDG_RUNTIME_DIR"):
        runtime_dir()


def test_a_socket_path_too_long_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    with pytest.raises(ConfigError, match="too long for a Unix socket"):
        control_socket_path(tmp_path)


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rcd-rt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_a_daemon_runs_and_answers_when_another_user_took_its_tmp_dir(
    short_tmp_path: Path,
) -> None:
    """The real daemon and `rcd status`, with no XDG_RUNTIME_DIR and /tmp/rcd-<uid> made by
    another user: both use the private fallback, and the other user's directory stays
    untouched (nothing created in it)."""
    needs_root()
    # (The fallback lives in HOME: pytest's own tmp paths grow past a socket path's 108 bytes.)
    tmp_path = short_tmp_path
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    shared = tmp / f"rcd-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    os.chown(shared, OTHER_UID, OTHER_UID)
    home = tmp_path / "home"
    extra = {"XDG_RUNTIME_DIR": "", "TMPDIR": str(tmp)}
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        project = tmp_path / "project"
        project.mkdir()
        daemon = await start_daemon(relay, home, project, extra_env=extra)
        status = await daemon.status()
        assert status["environment"]["id"] == daemon.environment_id
        fallback = home / ".state" / "rcd" / "run"
        [sock] = list(fallback.glob("*.sock"))
        assert mode(fallback) == 0o700 and os.lstat(fallback).st_uid == os.getuid()
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert list(shared.iterdir()) == []
        result = await rcd(home_env(home, extra), "status", str(project))
        assert f"not using {shared}".encode() in result.stderr
        assert b"belongs to another user" in result.stderr
        assert await daemon.stop() == 0
        assert "belongs to another user" in daemon.log()
        await relay.aclose()
        nursery.cancel_scope.cancel()
