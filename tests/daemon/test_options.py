"""``rcd start``'s options have one source, :class:`daemon.options.StartOptions`: a new
option is one field there, and the parsers, the daemon's options and the service files
follow without another line."""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs
import pytest

import cli
from cli.main import _agent_is_acp
from common.options import add_options, option, option_words, options_of
from daemon.errors import ConfigError
from daemon.options import START_OPTIONS, StartOptions, add_start_options, start_args


def _start_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices["start"]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def test_every_field_but_the_directory_is_an_option_of_rcd_start() -> None:
    # (and ``given``: which of them its command line gave; ``agent_command``: the words
    # after ``--``)
    fields = [
        f.name for f in attrs.fields(StartOptions) if f.name not in ("given", "agent_command")
    ]
    assert fields[0] == "directory"
    assert [o.dest for o in START_OPTIONS] == fields[1:]
    flags = {a.dest: a for a in _start_parser()._actions}
    for spec in START_OPTIONS:
        assert flags[spec.dest].option_strings == list(spec.flags)
        # The field's default is the parser's: written once.
        field_default = attrs.fields_dict(StartOptions)[spec.dest].default
        parsed_default = flags[spec.dest].default
        # (A repeated option collects into argparse's list; the field keeps a tuple.)
        assert (tuple(parsed_default) if spec.repeat else parsed_default) == field_default


def test_parsed_arguments_become_the_daemons_options() -> None:
    args = _start_parser().parse_args(
        ["--capacity", "5", "--spawn", "worktree", "--stop-timeout", "2.5", "-v", "proj"]
    )
    options = StartOptions.from_args(args)
    assert options == StartOptions(
        directory=Path("proj"), capacity=5, spawn="worktree", stop_timeout=2.5, verbose=True
    )
    assert options.spares == 5
    assert StartOptions.from_args(_start_parser().parse_args([])) == StartOptions()


def test_a_new_option_is_one_field() -> None:
    """What the next option of ``rcd start`` will be: a field, and nothing else changes."""

    @attrs.frozen(kw_only=True)
    class WithOneMore(StartOptions):
        sandbox: bool = option("--sandbox", store_true=True, help="run agents in a sandbox")
        sandbox_profile: str | None = option("--sandbox-profile", metavar="NAME", help="which")

    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    add_options(parser, options_of(WithOneMore))
    args = parser.parse_args(["--sandbox", "--sandbox-profile=-strict", "--capacity=4", "."])
    # The daemon's options carry it ...
    options = WithOneMore.from_args(args)
    assert options.sandbox and options.sandbox_profile == "-strict" and options.capacity == 4
    # ... and a service runs it again, word for word (a value starting with '-' included).
    words = option_words(args, options_of(WithOneMore))
    assert words == ["--capacity=4", "--stop-timeout=10", "--sandbox", "--sandbox-profile=-strict"]
    assert WithOneMore.from_args(parser.parse_args([*words, "."])) == options


def test_the_service_parser_takes_the_same_options() -> None:
    ours = argparse.ArgumentParser()
    add_start_options(ours)
    theirs = {a.dest: (a.option_strings, a.default) for a in _start_parser()._actions}
    assert {a.dest: (a.option_strings, a.default) for a in ours._actions} == theirs


def test_an_acp_agent_takes_its_command_after_the_double_dash() -> None:
    def parsed(*words: str) -> StartOptions:
        cut = words.index("--") if "--" in words else len(words)
        args = _start_parser().parse_args(list(words[:cut]))
        args.agent_command = list(words[cut + 1 :])
        return StartOptions.from_args(args)

    acp = parsed("--agent", "acp", "--", "my-agent", "--flag")
    assert acp.agent_argv() == ["my-agent", "--flag"]
    assert parsed("--agent", "gemini").agent_argv() == ["gemini", "--acp"]
    assert parsed("--agent", "codex", "--agent-bin", "/opt/codex-acp").agent_argv() == [
        "/opt/codex-acp"
    ]
    with pytest.raises(ConfigError, match="needs the agent's command after `--`"):
        parsed("--agent", "acp")
    with pytest.raises(ConfigError, match="are the command of --agent acp"):
        parsed("--", "stray")
    with pytest.raises(ConfigError, match="with --agent acp the program is the first word"):
        parsed("--agent", "acp", "--agent-bin", "x", "--", "my-agent")
    relative = parsed("--agent", "acp", "--", "./bin/agent", "--acp")
    assert relative.agent_argv() == [str(Path("bin/agent").absolute()), "--acp"]
    # Without --agent acp, `--` keeps its meaning: the words after it are not split off.
    assert not _agent_is_acp(["start", "--", "-proj"])
    assert _agent_is_acp(["start", "--agent=acp", "--", "x"])
    assert _agent_is_acp(["start", "--agent", "acp", "--", "x"])
    assert not _agent_is_acp(["start", "--agent", "codex", "--", "x"])
    # A service's options: --agent acp without its command is refused there too.
    with pytest.raises(ConfigError, match="--agent acp needs the agent's command"):
        start_args(_start_parser().parse_args(["--agent", "acp"]))
