"""``/api/environments/{environment_id}/grants``: approval grants (see :mod:`wire.grants`),
listed, asked for and revoked by a signed-in client.

The daemon decides, dates and keeps them: the relay only carries a client's request to it
(an :class:`wire.UpdateSettings` directive, in order with the environment's other
directives) and shows the grants the daemon last reported. ``POST`` (a
:class:`wire.GrantRequest`) answers ``201`` with the grant as the daemon took it, ``409
grant_refused`` with the daemon's reason, or ``202`` with ``{"id": ...}`` when the daemon
has not answered within ``config.settings_wait``. ``DELETE .../{grant_id}`` answers ``200``
with the grants left once the daemon dropped it (from then on it covers nothing), ``404
unknown_grant`` for one not in force, ``202`` when the daemon has not answered yet.
"""

from __future__ import annotations

import re

import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wire import GRANT_ID_PATTERN, GrantRequest, Grants, SettingsUpdate, UpdateSettings, encode

from .auth import authenticate_client
from .config import RelayConfig
from .errors import Conflict, NotFound
from .httputil import CLIENT_BODY_LIMIT, decode_body, json_response
from .ids import new_id
from .settings_api import SettingsApi
from .storage import Storage

__all__ = ["GrantsApi"]


@attrs.define(eq=False)
class GrantsApi:
    storage: Storage
    settings: SettingsApi
    config: RelayConfig

    def routes(self) -> list[Route]:
        path = "/api/environments/{environment_id}/grants"
        return [
            Route(path, self.grants, methods=["GET", "POST"]),
            Route(path + "/{grant_id}", self.revoke, methods=["DELETE"]),
        ]

    async def grants(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        environment_id = request.path_params["environment_id"]
        before = await self.settings.view(environment_id)
        if request.method == "GET":
            return json_response(encode(Grants(grants=before.grants)))
        await self._check_daemon(environment_id)
        asked = await decode_body(
            request, GrantRequest, CLIENT_BODY_LIMIT, self.config.body_deadline
        )
        if asked.session_id is not None:
            session = await self.storage.get_session(asked.session_id)
            if session is None or session.environment_id != environment_id:
                raise NotFound(
                    f"no session {asked.session_id} in this environment", "unknown_session"
                )
            if session.state == "ended":
                raise Conflict("session_ended", f"session {asked.session_id} has ended")
        grant_id = new_id("grt")
        directive = UpdateSettings(
            id=new_id("set"),
            update=SettingsUpdate(),
            origin=client.name,
            grant=asked,
            grant_id=grant_id,
        )
        view = await self.settings.send(environment_id, directive, "grant_refused")
        taken = [g for g in view.grants if g.id == grant_id] if view is not None else []
        if not taken:
            return json_response({"id": grant_id}, status=202)
        return json_response(encode(taken[0]), status=201)

    async def revoke(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        environment_id = request.path_params["environment_id"]
        grant_id = request.path_params["grant_id"]
        await self.settings.view(environment_id)
        if not re.fullmatch(GRANT_ID_PATTERN, grant_id):
            raise NotFound(f"no grant {grant_id[:80]} in force here", "unknown_grant")
        await self._check_daemon(environment_id)
        # Sent whether or not the last list names it: the daemon may hold one it took but
        # could not report yet (it refuses one it does not hold).
        directive = UpdateSettings(
            id=new_id("set"), update=SettingsUpdate(), origin=client.name, revoke_grant=grant_id
        )
        try:
            view = await self.settings.send(environment_id, directive, "grant_refused")
        except Conflict as exc:
            if exc.code == "grant_refused" and exc.message.startswith("no grant"):
                raise NotFound(exc.message, "unknown_grant") from None
            raise
        if view is None:
            return json_response({"id": grant_id}, status=202)
        return json_response(encode(Grants(grants=view.grants)))

    async def _check_daemon(self, environment_id: str) -> None:
        if "grants" not in await self.storage.environment_features(environment_id):
            raise Conflict(
                "grants_unsupported",
                "this environment's daemon cannot keep approval grants: upgrade rcd on its machine",
            )
