"""Browser-facing routes: the web app (its page and its static assets), sign-in by one-time
link, sign-out.

The web app is plain files under ``relay/web/`` (no build step): ``index.html`` is served at
``/`` and ``/s/{session_id}``, everything else at ``/assets/<path>``. The files are read once
from the installed package when the app is created, so serving them never touches the disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable

import attrs
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .auth import SESSION_COOKIE, has_csrf_header, hash_secret, new_web_session
from .config import RelayConfig
from .errors import CsrfMissing, NotFound, Unauthenticated
from .httputil import client_address
from .ratelimit import AttemptLimiter, limit_key
from .storage import Storage
from .useragent import stored_user_agent

__all__ = [
    "PAGE_CSP",
    "WEB_SESSION_TTL",
    "Asset",
    "Pages",
    "clear_session_cookie",
    "load_assets",
    "load_index_html",
]

#: How long a browser stays signed in.
WEB_SESSION_TTL = 30 * 24 * 3600

#: The page's Content-Security-Policy: scripts and styles only from the relay's own files
#: (no inline script or style), no plugins, no framing, requests only to the relay.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

_PAGE_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

#: Asset responses are never documents: nothing in them may load or run anything.
_ASSET_CSP = "default-src 'none'; frame-ancestors 'none'"

#: The file types served under ``/assets/``; anything else in ``relay/web`` is not served.
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}


@attrs.frozen(kw_only=True)
class Asset:
    body: bytes
    content_type: str
    #: A strong validator: browsers revalidate (``no-cache``) and get 304 while unchanged.
    etag: str


def _web_dir() -> Traversable:
    return resources.files("relay").joinpath("web")


def load_index_html() -> str:
    return _web_dir().joinpath("index.html").read_text(encoding="utf-8")


def _walk(directory: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in directory.iterdir():
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.is_file():
            yield f"{prefix}{entry.name}", entry


def load_assets() -> dict[str, Asset]:
    """Every servable file under ``relay/web``, by its path relative to it."""
    assets = {}
    for path, entry in _walk(_web_dir()):
        suffix = path[path.rfind(".") :] if "." in path else ""
        content_type = _CONTENT_TYPES.get(suffix)
        if content_type is None:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path] = Asset(body=body, content_type=content_type, etag=etag)
    return assets


@attrs.define(eq=False)
class Pages:
    storage: Storage
    config: RelayConfig
    #: Failed sign-ins per address.
    attempts: AttemptLimiter = attrs.field(factory=lambda: AttemptLimiter("sign-in"))
    _index_html: str = attrs.field(factory=load_index_html, init=False)
    _assets: dict[str, Asset] = attrs.field(factory=load_assets, init=False)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/s/{session_id}", self.index, methods=["GET"]),
            Route("/assets/{path:path}", self.asset, methods=["GET"]),
            # The service worker covers what is below its own path: served at the top.
            Route("/sw.js", self.service_worker, methods=["GET"]),
            Route("/login", self.login, methods=["GET"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self._index_html, headers=_PAGE_HEADERS)

    async def service_worker(self, request: Request) -> Response:
        # Its policy is the worker's own: it may show the app's icon and, later, talk to
        # the relay, nothing else.
        return self._serve("sw.js", request, csp=PAGE_CSP)

    async def asset(self, request: Request) -> Response:
        """A static file of the web app; 304 when ``If-None-Match`` has its ETag."""
        return self._serve(request.path_params["path"], request)

    def _serve(self, path: str, request: Request, *, csp: str = _ASSET_CSP) -> Response:
        asset = self._assets.get(path)
        if asset is None:
            raise NotFound(f"no asset {path}")
        headers = {
            "etag": asset.etag,
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
            "content-security-policy": csp,
        }
        if asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    async def login(self, request: Request) -> Response:
        """A one-time code → a cookie session, then 303 to ``/``."""
        code = request.query_params.get("code", "")
        caller = client_address(request, self.config.trusted_proxies)
        # Counted as a failure from here (no await between the check and the count), and
        # taken back only once the code proved right.
        attempt = self.attempts.begin(limit_key(caller))
        session = new_web_session()
        if not code or not await self.storage.redeem_login_code(
            hash_secret(code),
            hash_secret(session),
            WEB_SESSION_TTL,
            user_agent=stored_user_agent(request.headers.get("user-agent")),
            address=caller,
        ):
            raise Unauthenticated(
                "this sign-in link is unknown, used or expired; run 'rcd relay login-link'",
                code="invalid_login_code",
            )
        attempt.succeeded()
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
        """End the cookie session (if any) and clear the cookie: 204. With a cookie, the
        request must carry the CSRF header like every cookie-signed write (403 ``csrf``,
        and nothing ends): a page on another site must not sign the browser out."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            if not has_csrf_header(request):
                raise CsrfMissing()
            await self.storage.delete_web_session(hash_secret(cookie))
        return clear_session_cookie(Response(status_code=204), self.config)


def clear_session_cookie(response: Response, config: RelayConfig) -> Response:
    """``response``, telling the browser to forget its ``rcd_session`` cookie."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=config.secure_cookies, httponly=True, samesite="strict"
    )
    return response
