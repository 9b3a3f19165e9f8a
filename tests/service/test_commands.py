"""``rcd service install|uninstall|status`` against fake systemctl/launchctl on PATH: the
files land where the managers look, with mode 0644, and the right commands run in order."""

from __future__ import annotations

import os
import plistlib
import stat
import sys
from pathlib import Path

import attrs
import pytest

from daemon.options import start_args
from service import systemd
from service.commands import run_service_command
from service.options import rcd_command, service_options
from service.systemd import render_systemd_unit
from tests.service.helpers import parse

# Records its arguments, one call a line. FAKE_FAIL makes the matching call fail the way
# systemctl does without a user bus; `status`/`print` answer FAKE_STATUS.
FAKE_MANAGER = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
if [ -n "$FAKE_FAIL" ]; then
  case "$*" in *"$FAKE_FAIL"*) echo "Failed to connect to bus: No medium found" >&2; exit 1;; esac
fi
case "$*" in
  *" status "*|"print "*) echo "state = ${FAKE_STATUS:-unknown}"; exit ${FAKE_STATUS_RC:-0};;
esac
exit 0
"""


@attrs.frozen
class Machine:
    home: Path
    project: Path
    bin: Path
    log: Path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def fake(self, name: str) -> None:
        path = self.bin / name
        path.write_text(FAKE_MANAGER)
        path.chmod(0o755)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "my project"
    project.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_LOG", str(log))
    for var in ("FAKE_FAIL", "FAKE_STATUS", "FAKE_STATUS_RC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(systemd, "LINGER_DIR", tmp_path / "linger")
    return Machine(home=home, project=project, bin=bin_dir, log=log)


def unit_file(machine: Machine, *options: str) -> Path:
    name = service_options(parse("install", str(machine.project), *options)).unit_name
    return machine.home.parent / "config" / "systemd" / "user" / name


def test_install_writes_the_unit_and_starts_it(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("systemctl")
    args = parse("install", str(machine.project), "--capacity", "4", "--platform", "linux")
    assert run_service_command(args) == 0

    path = unit_file(machine)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == render_systemd_unit(service_options(args), rcd_command())
    assert "--capacity=4" in path.read_text()
    assert machine.calls() == [
        "--user daemon-reload",
        f"--user enable --now {path.name}",
    ]
    out = capsys.readouterr().out
    assert f"wrote {path}" in out
    assert f"loginctl enable-linger {systemd.user_name()}" in out
    assert f"journalctl --user -u {path.name}" in out


def test_reinstall_with_new_options_restarts(machine: Machine) -> None:
    machine.fake("systemctl")
    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 0
    machine.log.unlink()
    # The same options again: nothing to restart.
    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 0
    name = unit_file(machine).name
    assert machine.calls() == ["--user daemon-reload", f"--user enable --now {name}"]
    machine.log.unlink()
    args = parse("install", str(machine.project), "--spawn=worktree", "--platform=linux")
    assert run_service_command(args) == 0
    assert machine.calls() == [
        "--user daemon-reload",
        f"--user enable {name}",
        f"--user restart {name}",
    ]
    assert "--spawn=worktree" in unit_file(machine).read_text()


def test_lingering_users_get_no_linger_hint(
    machine: Machine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("systemctl")
    (tmp_path / "linger").mkdir()
    (tmp_path / "linger" / systemd.user_name()).touch()
    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 0
    assert "enable-linger" not in capsys.readouterr().out


def test_failing_systemctl_is_named_and_the_unit_stays(
    machine: Machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("systemctl")
    monkeypatch.setenv("FAKE_FAIL", "enable")
    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 1
    path = unit_file(machine)
    assert path.exists()
    err = capsys.readouterr().err
    assert f"`systemctl --user enable --now {path.name}` failed (exit 1)" in err
    assert "Failed to connect to bus" in err
    assert "login session" in err  # the hint for a missing user bus
    assert f"Then run by hand:\n  systemctl --user enable --now {path.name}\n" in err
    assert f"{path} stays in place" in err


def test_missing_systemctl_says_what_to_run(
    machine: Machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(machine.bin))  # no systemctl anywhere
    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 1
    path = unit_file(machine)
    assert path.exists()
    err = capsys.readouterr().err
    assert "could not run `systemctl --user daemon-reload`: systemctl is not on PATH" in err
    assert "  systemctl --user daemon-reload\n" in err
    assert f"  systemctl --user enable --now {path.name}\n" in err


def test_uninstall_stops_disables_and_removes(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("systemctl")
    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 0
    path = unit_file(machine)
    machine.log.unlink()
    assert run_service_command(parse("uninstall", str(machine.project), "--platform=linux")) == 0
    assert not path.exists()
    assert machine.calls() == [f"--user disable --now {path.name}", "--user daemon-reload"]
    assert f"stopped and removed {path}" in capsys.readouterr().out
    # Twice is fine.
    assert run_service_command(parse("uninstall", str(machine.project), "--platform=linux")) == 0
    assert "no rcd service is installed" in capsys.readouterr().out


def test_uninstall_keeps_the_unit_when_it_cannot_stop_it(
    machine: Machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("systemctl")
    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 0
    monkeypatch.setenv("FAKE_FAIL", "disable")
    assert run_service_command(parse("uninstall", str(machine.project), "--platform=linux")) == 1
    path = unit_file(machine)
    assert path.exists()
    err = capsys.readouterr().err
    assert f"  systemctl --user disable --now {path.name}\n  rm -f " in err


def test_status_shows_the_file_and_the_manager(
    machine: Machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("systemctl")
    monkeypatch.setenv("FAKE_STATUS_RC", "3")
    monkeypatch.setenv("FAKE_STATUS", "inactive")
    assert run_service_command(parse("status", str(machine.project), "--platform=linux")) == 1
    path = unit_file(machine)
    out = capsys.readouterr().out
    assert f"not installed: {path}" in out and "state = inactive" in out

    assert run_service_command(parse("install", str(machine.project), "--platform=linux")) == 0
    monkeypatch.setenv("FAKE_STATUS_RC", "0")
    monkeypatch.setenv("FAKE_STATUS", "active")
    capsys.readouterr()
    assert run_service_command(parse("status", str(machine.project), "--platform=linux")) == 0
    out = capsys.readouterr().out
    assert f"installed: {path}" in out and "state = active" in out
    assert machine.calls()[-1] == f"--user status --no-pager --full {path.name}"


def test_print_renders_and_changes_nothing(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("systemctl")
    args = parse("install", str(machine.project), "--capacity=3", "--print", "--platform=linux")
    assert run_service_command(args) == 0
    out = capsys.readouterr().out
    assert out == render_systemd_unit(service_options(args), rcd_command())
    assert not unit_file(machine).exists()
    assert machine.calls() == []
    args = parse("install", str(machine.project), "--print", "--platform=macos")
    assert run_service_command(args) == 0
    assert plistlib.loads(capsys.readouterr().out.encode())["RunAtLoad"] is True
    assert not (machine.home / "Library").exists()


def test_options_are_validated_like_rcd_start(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("install", "--capacity", "0")
    assert exited.value.code == 2
    assert "--capacity: must be at least 1, got 0" in capsys.readouterr().err

    machine.fake("systemctl")
    missing = str(machine.project.parent / "missing")
    assert run_service_command(parse("install", missing, "--platform=linux")) == 1
    assert "is not a directory" in capsys.readouterr().err
    bad_relay = parse("install", str(machine.project), "--relay=ftp://x", "--platform=linux")
    assert run_service_command(bad_relay) == 1
    assert "must start with http:// or https://" in capsys.readouterr().err
    plain = parse("install", str(machine.project), "--relay=http://r.example", "--platform=linux")
    assert run_service_command(plain) == 1
    assert "refusing plain HTTP to http://r.example" in capsys.readouterr().err
    args = parse("install", "--relay=http://r.example", "--insecure-http", "--ca-cert=ca.pem")
    words = start_args(args)
    assert "--insecure-http" in words and f"--ca-cert={Path('ca.pem').absolute()}" in words
    unpaired = parse("install", str(machine.project), "--relay=https://r.example")
    assert run_service_command(unpaired) == 1
    assert "not paired with https://r.example" in capsys.readouterr().err
    # An allowed agent whose program the service's PATH lacks: rcd start would refuse it,
    # and the service restart again and again.
    allowing = parse("install", str(machine.project), "--allow-agent=gemini", "--platform=linux")
    assert run_service_command(allowing) == 1
    assert "--allow-agent gemini: its program 'gemini' is not on" in capsys.readouterr().err
    assert machine.calls() == []  # nothing was started


def test_macos_install_bootstraps_the_agent_and_uninstall_boots_it_out(
    machine: Machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.fake("launchctl")
    monkeypatch.setenv("FAKE_STATUS_RC", "113")  # `launchctl print`: not loaded
    assert run_service_command(parse("install", str(machine.project), "--platform=macos")) == 0
    opts = service_options(parse("install", str(machine.project)))
    path = machine.home / "Library" / "LaunchAgents" / f"{opts.label}.plist"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == opts.label
    assert Path(plist["StandardOutPath"]).parent.is_dir()  # launchd will not create it
    target = f"gui/{os.getuid()}/{opts.label}"
    assert machine.calls() == [
        f"print {target}",
        f"enable {target}",
        f"bootstrap gui/{os.getuid()} {path}",
    ]
    assert opts.label in capsys.readouterr().out

    machine.log.unlink()
    monkeypatch.setenv("FAKE_STATUS_RC", "0")  # loaded now
    assert run_service_command(parse("uninstall", str(machine.project), "--platform=macos")) == 0
    assert not path.exists()
    assert f"bootout {target}" in machine.calls()


def test_rcd_command_is_absolute() -> None:
    argv = rcd_command()
    assert os.path.isabs(argv[0])
    assert argv == [sys.executable, "-P", "-m", "daemon"] or Path(argv[0]).name == "rcd"
