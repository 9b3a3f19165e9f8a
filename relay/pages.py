"""Browser-facing routes: the web app's page, sign-in by one-time link, sign-out."""

from __future__ import annotations

from importlib import resources

import attrs
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .auth import SESSION_COOKIE, hash_secret, new_web_session
from .config import RelayConfig
from .errors import Unauthenticated
from .storage import Storage

__all__ = ["WEB_SESSION_TTL", "Pages", "load_index_html"]

#: How long a browser stays signed in.
WEB_SESSION_TTL = 30 * 24 * 3600

_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def load_index_html() -> str:
    return resources.files("relay").joinpath("web/index.html").read_text(encoding="utf-8")


@attrs.define(eq=False)
class Pages:
    storage: Storage
    config: RelayConfig
    _index_html: str = attrs.field(factory=load_index_html, init=False)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/s/{session_id}", self.index, methods=["GET"]),
            Route("/login", self.login, methods=["GET"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self._index_html, headers=_PAGE_HEADERS)

    async def login(self, request: Request) -> Response:
        """A one-time code → a cookie session, then 303 to ``/``."""
        code = request.query_params.get("code", "")
        session = new_web_session()
        if not code or not await self.storage.redeem_login_code(
            hash_secret(code), hash_secret(session), WEB_SESSION_TTL
        ):
            raise Unauthenticated(
                "this sign-in link is unknown, used or expired; run 'rcd relay login-link'",
                code="invalid_login_code",
            )
        response = RedirectResponse("/", status_code=303, headers={"cache-control": "no-store"})
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=WEB_SESSION_TTL,
            path="/",
            secure=self.config.secure_cookies,
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        """End the cookie session (if any) and clear the cookie; always 204."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            await self.storage.delete_web_session(hash_secret(cookie))
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=self.config.secure_cookies,
            httponly=True,
            samesite="strict",
        )
        return response
