"""Rendering service files: every start option reaches the daemon, the stop deadlines sit
above the daemon's own, and the files are what systemd and launchd accept."""

from __future__ import annotations

import argparse
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from daemon.errors import ConfigError
from daemon.options import add_start_options
from service import (
    ServiceOptions,
    render_launchd_plist,
    render_systemd_unit,
    service_options,
)
from tests.service.helpers import exec_start_argv, parse, unit_value

RCD = [sys.executable, "-P", "-m", "daemon"]
ALL_OPTIONS = [
    "--relay", "https://relay.example/",
    "--name", "my laptop",
    "--spawn", "worktree",
    "--capacity", "5",
    "--agent", "claude",
    "--agent-bin", "/opt/claude/bin/claude",
    "--outage-timeout", "0",
    "--stop-timeout", "20",
    "--relay-port", "9000",
    "--relay-data-dir", "relay-data",
    "--verbose",
]  # fmt: skip
EXPECTED_WORDS = [
    "--relay=https://relay.example",
    "--name=my laptop",
    "--spawn=worktree",
    "--capacity=5",
    "--agent-bin=/opt/claude/bin/claude",
    "--outage-timeout=0",
    "--stop-timeout=20",
    "--relay-port=9000",
    "--verbose",
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", "/opt/claude/bin:/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "my project"
    path.mkdir()
    return path


def options(*argv: str) -> ServiceOptions:
    return service_options(parse("install", *argv))


def test_unit_passes_every_start_option_and_stops_after_the_daemon(project: Path) -> None:
    unit = render_systemd_unit(options(str(project), *ALL_OPTIONS), RCD)

    argv = exec_start_argv(unit)
    assert argv[: len(RCD) + 1] == [*RCD, "start"]
    for word in EXPECTED_WORDS:
        assert word in argv
    # relative paths are pinned to where `rcd service install` ran; DIR comes last
    assert f"--relay-data-dir={project.parent / 'relay-data'}" in argv
    assert argv[-1] == str(project)
    assert int(unit_value(unit, "TimeoutStopSec")) == 20 + 15

    assert unit_value(unit, "Type") == "notify"
    assert unit_value(unit, "NotifyAccess") == "main"
    assert unit_value(unit, "WorkingDirectory") == str(project)
    assert unit_value(unit, "Restart") == "on-failure"
    assert unit_value(unit, "RestartSec") == "5"
    assert unit_value(unit, "KillMode") == "mixed"
    assert unit_value(unit, "EnvironmentFile") == "-%h/.config/rcd/env"
    assert unit_value(unit, "WantedBy") == "default.target"
    assert str(project) in unit_value(unit, "Description")
    environment = [line for line in unit.splitlines() if line.startswith("Environment=")]
    assert "Environment=PYTHONUNBUFFERED=1" in environment
    assert 'Environment="PATH=/opt/claude/bin:/usr/bin:/bin"' in environment


def test_defaults_stay_out_of_exec_start_but_the_stop_timeout_is_pinned(project: Path) -> None:
    unit = render_systemd_unit(options(str(project)), RCD)
    assert exec_start_argv(unit) == [*RCD, "start", "--stop-timeout=10", str(project)]
    assert int(unit_value(unit, "TimeoutStopSec")) > 10


def test_fractional_stop_timeout_rounds_the_deadline_up(project: Path) -> None:
    unit = render_systemd_unit(options(str(project), "--stop-timeout", "2.5"), RCD)
    assert "--stop-timeout=2.5" in exec_start_argv(unit)
    assert unit_value(unit, "TimeoutStopSec") == "18"


@pytest.mark.parametrize(
    "name", ['say "hi"', "100% sure", "$HOME and ${HOME}", "back\\slash", ";", "-starts-dashed", ""]
)
def test_exec_start_quoting_survives_any_value(project: Path, name: str) -> None:
    unit = render_systemd_unit(options(str(project), f"--name={name}"), RCD)
    assert f"--name={name}" in exec_start_argv(unit)


def test_odd_directory_names_are_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    odd = tmp_path / '50% $off "sale"'
    odd.mkdir()
    unit = render_systemd_unit(options(str(odd)), RCD)
    assert exec_start_argv(unit)[-1] == str(odd)
    assert unit_value(unit, "WorkingDirectory").replace("%%", "%") == str(odd)


def test_control_characters_are_refused(project: Path) -> None:
    with pytest.raises(ConfigError, match="control character"):
        render_systemd_unit(options(str(project), "--name", "two\nlines"), RCD)
    with pytest.raises(ConfigError, match="absolute path"):
        render_systemd_unit(options(str(project)), ["rcd"])


def test_one_service_per_directory(tmp_path: Path, project: Path) -> None:
    other = tmp_path / "elsewhere" / "my project"
    other.mkdir(parents=True)
    a, b = options(str(project)), options(str(other))
    assert a.unit_name.startswith("rcd-my-project-") and a.unit_name.endswith(".service")
    assert a.unit_name != b.unit_name and a.label != b.label
    assert options(str(project), "--capacity", "3").unit_name == a.unit_name
    assert a.label == "org.rcd.daemon." + a.unit_name.removeprefix("rcd-").removesuffix(".service")


def test_plist_has_the_launchd_fields(project: Path) -> None:
    opts = options(str(project), *ALL_OPTIONS, "--name", "<me & you>")
    plist = plistlib.loads(render_launchd_plist(opts, RCD))

    assert plist["Label"] == opts.label
    argv = plist["ProgramArguments"]
    assert argv[: len(RCD) + 1] == [*RCD, "start"] and argv[-1] == str(project)
    for word in [w for w in EXPECTED_WORDS if not w.startswith("--name")]:
        assert word in argv
    assert "--name=<me & you>" in argv
    assert plist["WorkingDirectory"] == str(project)
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ExitTimeOut"] > 20
    logs = Path(os.environ["HOME"]) / "Library" / "Logs" / "rcd"
    assert Path(plist["StandardOutPath"]).parent == logs
    assert Path(plist["StandardErrorPath"]).parent == logs
    assert plist["ProcessType"] in ("Interactive", "Standard")
    assert plist["LimitLoadToSessionType"] == "Aqua"
    assert plist["EnvironmentVariables"]["PATH"] == "/opt/claude/bin:/usr/bin:/bin"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path, project: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail(
            "systemd-analyze is missing: it is in Debian's `systemd` package "
            "(apt-get update && apt-get install -y systemd)"
        )
    opts = options(str(project), *ALL_OPTIONS, "--name", 'it\'s 100% "$fine"')
    unit = render_systemd_unit(opts, RCD)
    assert verify(analyze, tmp_path, opts.unit_name, unit) == []
    # The check itself is not blind: a broken unit is reported (with exit 0, hence the
    # look at the output).
    broken = unit.replace("Type=notify", "Type=notifyy").replace(RCD[0], "/nonexistent/python")
    problems = verify(analyze, tmp_path, opts.unit_name, broken)
    assert any("notifyy" in line for line in problems), problems
    assert any("/nonexistent/python" in line for line in problems), problems


def verify(analyze: str, tmp_path: Path, name: str, text: str) -> list[str]:
    """Problems ``systemd-analyze --user verify`` reports about this unit."""
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    (units / name).write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        # A user manager needs a runtime dir; empty config/data dirs keep the user's own
        # units (and their warnings) out of it.
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(tmp_path / "empty-config"),
        "XDG_DATA_HOME": str(tmp_path / "empty-data"),
        "SYSTEMD_LOG_COLOR": "0",
    }
    result = subprocess.run(
        [analyze, "--user", "verify", str(units / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if name.split(".")[0] in line
    ]
    if result.returncode != 0 and not problems:
        problems = [f"exit {result.returncode}: {result.stdout}{result.stderr}"]
    return problems


def _options_of(parser: argparse.ArgumentParser) -> dict[str, tuple[object, ...]]:
    return {
        action.dest: (
            tuple(action.option_strings),
            action.default,
            tuple(action.choices) if action.choices else None,
            action.metavar,
            action.nargs,
            action.help,
        )
        for action in parser._actions
        if action.dest != "help"
    }


def test_start_options_match_rcd_start(capsys: pytest.CaptureFixture[str]) -> None:
    """``add_start_options`` defines what ``rcd start`` accepts, with the same defaults and
    the same validation (until cli.py uses it itself)."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    start = sub.choices["start"]
    ours = argparse.ArgumentParser()
    add_start_options(ours)
    assert _options_of(ours) == _options_of(start)
    for bad in (
        ["--capacity", "0"],
        ["--stop-timeout", "soon"],
        ["--relay-port", "70000"],
        ["--spare-worktrees", "-1"],
    ):
        errors = []
        for parser in (ours, start):
            with pytest.raises(SystemExit):
                parser.parse_args(bad)
            errors.append(capsys.readouterr().err.split("error: ")[-1])
        assert errors[0] == errors[1], errors


def test_an_acp_agent_s_command_follows_dir_and_reads_back_as_rcd_start(project: Path) -> None:
    """``rcd service install --agent acp DIR -- CMD ARGS``: the unit and the plist run
    ``rcd start ... DIR -- CMD ARGS``, which rcd's own command line reads back as the same
    agent and command (a relative program pinned to where the install ran)."""
    from cli.main import parse_command_line
    from daemon.options import StartOptions

    words = ["--agent", "acp", "--name", "acp box", "--", "./bin/my agent", "--acp", "--"]
    opts = service_options(parse_command_line(["service", "install", str(project), *words]))
    program = str(project.parent / "bin" / "my agent")
    assert opts.agent_command == (program, "--acp", "--")
    argv = exec_start_argv(render_systemd_unit(opts, RCD))
    assert argv[argv.index(str(project)) :] == [str(project), "--", program, "--acp", "--"]
    plist = plistlib.loads(render_launchd_plist(opts, RCD))
    assert plist["ProgramArguments"] == argv

    ran = parse_command_line(argv[len(RCD) :])
    started = StartOptions.from_args(ran)
    assert (started.agent, started.name, started.directory) == ("acp", "acp box", project)
    assert started.agent_argv() == [program, "--acp", "--"]


def test_an_acp_service_needs_its_command_and_only_acp_takes_one(project: Path) -> None:
    from cli.main import parse_command_line

    def install(*words: str) -> ServiceOptions:
        return service_options(parse_command_line(["service", "install", str(project), *words]))

    with pytest.raises(ConfigError, match="--agent acp needs the agent's command after `--`"):
        install("--agent", "acp")
    with pytest.raises(ConfigError, match="with --agent acp the program is the first word"):
        install("--agent", "acp", "--agent-bin", "/x", "--", "my-agent")
    # Uninstall and status know the service by its directory: no command needed.
    installed = install("--agent", "acp", "--", "my-agent")
    for action in ("uninstall", "status"):
        words = ["service", action, str(project), "--agent", "acp"]
        other = service_options(parse_command_line(words))
        assert (other.unit_name, other.label) == (installed.unit_name, installed.label)
        assert other.directory == installed.directory
    # Without --agent acp, `--` keeps its meaning (here: DIR given after it).
    plain = service_options(parse_command_line(["service", "install", "--", str(project)]))
    assert (plain.directory, plain.agent_command) == (project, ())
    assert exec_start_argv(render_systemd_unit(plain, RCD))[-1] == str(project)
