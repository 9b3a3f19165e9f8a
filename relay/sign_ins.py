"""The client API's browser sign-ins: ``GET /api/sign-ins`` and
``DELETE /api/sign-ins/{sign_in_id}`` (see ``docs/api.md``).

A sign-in is a web session: a browser that opened a one-time login link and holds the
``rcd_session`` cookie. Listing them shows each with what a person recognises (browser and
system, the address it signed in from, when it signed in and was last used); revoking one
ends it at once: its next request is 401 and its open event streams end within about a
second (:data:`relay.streams.CREDENTIAL_CHECK_INTERVAL`). ``rcd relay sign-ins`` does the
same from the relay's machine.
"""

from __future__ import annotations

from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wire import SignInInfo, encode

from .auth import authenticate_client
from .config import RelayConfig
from .errors import NotFound
from .httputil import json_response
from .pages import clear_session_cookie
from .records import ClientPrincipal, SignInRecord
from .storage import Storage

__all__ = ["SignInsApi", "sign_in_info"]


def sign_in_info(sign_in: SignInRecord, client: ClientPrincipal | None = None) -> SignInInfo:
    """The sign-in as clients see it; ``current`` when it is ``client``'s own."""
    return SignInInfo(
        id=sign_in.id,
        name=sign_in.name,
        user_agent=sign_in.user_agent,
        address=sign_in.address,
        created_at=sign_in.created_at,
        last_used_at=sign_in.last_used_at,
        expires_at=sign_in.expires_at,
        current=client is not None and client.session_hash == sign_in.session_hash,
    )


@attrs.define(eq=False)
class SignInsApi:
    storage: Storage
    config: RelayConfig

    def routes(self) -> list[Route]:
        return [
            Route("/api/sign-ins", self.list_sign_ins, methods=["GET"]),
            Route("/api/sign-ins/{sign_in_id}", self.revoke_sign_in, methods=["DELETE"]),
        ]

    async def list_sign_ins(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        sign_ins = await self.storage.list_sign_ins()
        listed: list[dict[str, Any]] = [encode(sign_in_info(s, client)) for s in sign_ins]
        return json_response({"sign_ins": listed})

    async def revoke_sign_in(self, request: Request) -> Response:
        """204; the browser signed out this way also gets its cookie cleared."""
        client = await authenticate_client(request, self.storage)
        sign_in_id = request.path_params["sign_in_id"]
        revoked = await self.storage.revoke_sign_in(sign_in_id)
        if revoked is None:
            raise NotFound(f"no sign-in {sign_in_id} (signed out already, or expired)")
        response = Response(status_code=204)
        if revoked == client.session_hash:
            clear_session_cookie(response, self.config)
        return response
