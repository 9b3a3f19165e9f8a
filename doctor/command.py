"""``rcd doctor``: run :mod:`daemon.checks` for the options given and print the findings."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import attrs

from daemon.agents import allowed_agent, check_acp_agent
from daemon.checks import (
    Finding,
    check_agent,
    check_credential,
    check_git,
    check_relay,
    check_runtime_dir,
    check_sandbox,
    check_service_manager,
)
from daemon.expose import check_tailscale
from daemon.lan import check_lan
from daemon.paths import default_relay
from service.manager import user_name

from .parser import doctor_options

__all__ = ["findings", "run_doctor"]

_MARK = {"ok": "ok", "problem": "PROBLEM", "note": "note"}


def findings(args: argparse.Namespace) -> list[Finding]:
    """Every check, in the order they are printed."""
    options = doctor_options(args)
    if options.relay is None:
        options = attrs.evolve(options, relay=default_relay())
    directory = options.directory.expanduser().resolve()
    claude = options.agent == "claude"
    return [
        check_agent(options.agent_bin)
        if claude
        else check_acp_agent(options.agent_argv()[0], options.agent),
        # Each agent a session may ask for (--allow-agent).
        *(allowed_agent(name) for name in options.agents[1:]),
        # Claude Code's model credential; an ACP agent's credentials are its own.
        *([check_credential(os.environ, Path.home())] if claude else []),
        check_git(directory, options.spawn),
        *([check_sandbox()] if options.sandbox else []),
        *check_relay(
            options.relay,
            port=options.relay_port,
            insecure_http=options.insecure_http,
            ca_cert=options.ca_cert,
        ),
        *([check_tailscale()] if options.expose == "tailscale" else []),
        *([check_lan(options.relay_port)] if options.expose == "lan" else []),
        check_service_manager(user_name()),
        check_runtime_dir(directory),
    ]


def run_doctor(args: argparse.Namespace) -> int:
    """Print the findings (or their JSON); 1 when any is a problem."""
    found = findings(args)
    ok = not any(f.status == "problem" for f in found)
    if args.json:
        body = {"ok": ok, "checks": [attrs.asdict(f) for f in found]}
        print(json.dumps(body, indent=2))
        return 0 if ok else 1
    width = max(len(f.name) for f in found)
    for f in found:
        print(f"{_MARK[f.status]:<7}  {f.name:<{width}}  {f.detail}")
        if f.fix and f.status != "ok":
            print(f"{'':<7}  {'':<{width}}  fix: {f.fix}")
    problems = sum(f.status == "problem" for f in found)
    if problems:
        print(f"\n{problems} problem{'s' if problems > 1 else ''}: rcd start may not work here")
    else:
        print("\nnothing in the way of `rcd start`")
    sys.stdout.flush()
    return 0 if ok else 1
