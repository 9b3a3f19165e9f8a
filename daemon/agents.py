"""The agents of an ``rcd start``: its default (``--agent``) and those a session may ask for
(``--allow-agent``), their adapters, and the checks that their programs are there."""

from __future__ import annotations

import attrs

from spawn import AgentAdapter, ClaudeCode
from spawn.acp import AcpAgent

from .checks import Finding, agent_missing_message, find_agent
from .errors import ConfigError
from .options import StartOptions, agent_program

__all__ = ["allowed_agent", "check_acp_agent", "check_agents", "make_adapter", "other_adapters"]


def make_adapter(options: StartOptions) -> AgentAdapter:
    """The adapter of ``options.agent``: Claude Code's CLI, or an ACP agent."""
    if options.agent == "claude":
        return ClaudeCode(binary=options.agent_bin or "claude", partial=not options.no_stream)
    return AcpAgent(argv=options.agent_argv(), name=options.agent, partial=not options.no_stream)


def other_adapters(options: StartOptions) -> dict[str, AgentAdapter]:
    """The agents of ``--allow-agent``, each found on PATH (``--agent-bin`` is the
    default's)."""
    others = [name for name in options.agents if name != options.agent]
    plain = attrs.evolve(options, agent_bin=None, agent_command=())
    return {name: make_adapter(attrs.evolve(plain, agent=name)) for name in others}


def check_agents(options: StartOptions) -> None:
    """ConfigError naming the first agent whose program is not found: the default's (its
    ``--agent-bin``, its ACP command's or preset's program), then each allowed one's."""
    claude = options.agent == "claude"
    program = options.agent_bin if claude else options.agent_argv()[0]
    if find_agent(program) is None:
        absent = (
            agent_missing_message(options.agent_bin)
            if claude
            else f"the agent's program {program!r} (--agent {options.agent}) was not found:"
            " install it, or give its path with --agent-bin"
        )
        raise ConfigError(
            absent + " (`rcd doctor` checks the rest; --no-agent-check starts anyway)"
        )
    for other in options.agents[1:]:
        program = agent_program(other)
        if find_agent(program) is None:
            raise ConfigError(
                f"--allow-agent {other}: its program {program!r} is not on PATH: install"
                " it, or leave it out (--no-agent-check starts anyway)"
            )


def allowed_agent(name: str) -> Finding:
    """``rcd doctor``'s check of an agent of ``--allow-agent``: its program on PATH."""
    program = agent_program(name)
    found = find_agent(program)
    check = f"agent {name}"
    if found is None:
        fix = "install it, or leave it out of --allow-agent"
        return Finding(name=check, status="problem", detail=f"{program!r} is not on PATH", fix=fix)
    return Finding(name=check, status="ok", detail=f"{found} (--allow-agent {name})")


def check_acp_agent(program: str, agent: str) -> Finding:
    """An Agent Client Protocol agent's program (``--agent NAME``): found or not. Not run:
    an ACP agent speaks on its stdio, and may have no ``--version``; its credentials
    (OPENAI_API_KEY, GEMINI_API_KEY...) are its own."""
    found = find_agent(program)
    if found is None:
        return Finding(
            name="agent",
            status="problem",
            detail=f"the agent's program {program!r} (--agent {agent}) was not found",
            fix="install it, or give its path with --agent-bin",
        )
    return Finding(name="agent", status="ok", detail=f"{found} (--agent {agent}, over ACP)")
