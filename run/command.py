"""``rcd run "PROMPT"``: pick the environment, create the session, print its URL, attach."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path
from typing import Any

import attrs
import httpx

import wire
from attach.api import SessionApi, call_relay
from attach.auth import Target
from attach.client import Attach
from attach.command import in_terminal
from attach.render import Style
from attach.term import Console
from daemon.errors import ConfigError, DaemonError

__all__ = ["choose_environment", "run_run"]


def run_run(args: argparse.Namespace) -> int:
    """Run ``rcd run`` with parsed ``args``; returns the exit status."""

    async def main(
        target: Target, console: Console, style: Style, verify: ssl.SSLContext | bool
    ) -> int:
        async with httpx.AsyncClient(timeout=15.0, verify=verify) as http:
            start = Start(http=http, target=target)
            environments = await start.environments()
            env = choose_environment(environments, args.env, Path.cwd())
            session = await start.session(env, args.prompt, args.spawn, args.title)
            console.print([str(session["url"])])
            if not args.attach:
                return 0
            follow = Attach(api=start.session_api(session["id"]), console=console, style=style)
            if not console.interactive:
                follow = attrs.evolve(follow, read_input=False, leave_after_turn=True)
            return await follow.run()

    return in_terminal(args, "run", main)


def choose_environment(
    environments: list[dict[str, Any]], wanted: str | None, cwd: Path
) -> dict[str, Any]:
    """The environment named (or with the id) ``wanted``; without it, the one whose
    directory is ``cwd`` or holds it (the nearest; an online one first). ConfigError
    naming the choices when there is none, or when it is offline."""
    names = ", ".join(
        f"{e['name']} ({'online' if e['online'] else 'offline'})" for e in environments
    )
    if wanted is not None:
        found = [e for e in environments if wanted in (e["name"], e["id"])]
        if not found:
            raise ConfigError(
                f"no environment {wanted!r} on this relay" + (f"; it has: {names}" if names else "")
            )
        env = sorted(found, key=lambda e: not e["online"])[0]
    else:
        here = cwd.resolve()
        serving = [
            e for e in environments
            if here == Path(e["directory"]) or Path(e["directory"]) in here.parents
        ]  # fmt: skip
        if not serving:
            raise ConfigError(
                f"no environment serves {here}: run `rcd start` here, or pass --env NAME"
                + (f" (this relay has: {names})" if names else "")
            )
        env = sorted(serving, key=lambda e: (not e["online"], -len(e["directory"])))[0]
    if not env["online"]:
        raise ConfigError(
            f"the environment {env['name']!r} is offline: its daemon (`rcd start` in"
            f" {env['directory']} on its machine) is not connected to the relay"
        )
    return env


@attrs.define(eq=False)
class Start:
    """The two calls ``rcd run`` makes before it attaches."""

    http: httpx.AsyncClient
    target: Target

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        relay, token = self.target.relay, self.target.token
        return await call_relay(self.http, relay, token, method, f"{relay}{path}", body)

    def session_api(self, session_id: str) -> SessionApi:
        """The calls ``rcd attach`` makes, for ``session_id``."""
        return SessionApi(
            http=self.http, relay=self.target.relay, token=self.target.token, session_id=session_id
        )

    async def environments(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/api/environments")
        environments: list[dict[str, Any]] = data["environments"]
        return environments

    async def environment(self, env_id: str) -> dict[str, Any]:
        """The environment ``env_id`` as the relay lists it (DaemonError if it does not)."""
        listed = [e for e in await self.environments() if e["id"] == env_id]
        if not listed:
            raise DaemonError(f"the relay at {self.target.relay} does not list {env_id}")
        return listed[0]

    async def session(
        self,
        env: dict[str, Any],
        prompt: str | None,
        spawn: str | None,
        title: str | None,
        conversation: str | None = None,
    ) -> dict[str, Any]:
        body = wire.CreateSession(
            prompt=prompt,
            spawn=spawn,  # type: ignore[arg-type]
            title=title,
            conversation=conversation,
        )
        session: dict[str, Any] = await self._call(
            "POST", f"/api/environments/{env['id']}/sessions", body
        )
        return session
