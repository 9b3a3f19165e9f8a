"""The relay's ASGI app: client API, daemon API and browser pages on one Starlette router.

Every 4xx is JSON ``{"error": {"code", "message"}}``, including unknown routes (404),
wrong methods (405) and oversize bodies (413). A 5xx is a bug; it is JSON too
(``internal_error``) and logged.
"""

from __future__ import annotations

import math
from http import HTTPStatus

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .changes_api import ChangesApi
from .client_api import ClientApi
from .config import RelayConfig
from .daemon_api import DaemonApi
from .errors import ApiError, RateLimited
from .fanout import Hub
from .grants_api import GrantsApi
from .httputil import error_response, http_status
from .pages import Pages
from .push_api import PushApi
from .ratelimit import AttemptLimiter
from .settings_api import SettingsApi
from .sign_ins import SignInsApi
from .storage import Storage
from .tokens import AnswerTokens, TokenIssuer

__all__ = ["create_app"]

log = structlog.get_logger("relay")

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"retry-after": str(math.ceil(exc.retry_after))}
    return error_response(http_status(exc), exc.code, exc.message, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail or HTTPStatus(exc.status_code).phrase
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    # Nobody is listening any more; the status only shows up in the access log.
    return Response(status_code=400)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error", method=request.method, path=request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the relay hit a bug; see its log")


def create_app(
    storage: Storage,
    hub: Hub,
    config: RelayConfig,
    *,
    tokens: TokenIssuer | None = None,
    answers: AnswerTokens | None = None,
) -> Starlette:
    """The ASGI app over an *open* ``storage``.

    ``config.url`` is used for session URLs, so pass the bound port (``serve_relay`` does).
    ``tokens`` mints and checks daemons' access tokens (default: a fresh key and
    ``config.access_token_ttl``). ``answers`` checks notifications' answer tokens (the
    notifier's, which mints them; default: a fresh key).
    """
    if tokens is None:
        tokens = TokenIssuer(ttl=config.access_token_ttl)
    sign_in = AttemptLimiter("sign-in", limit=config.failed_attempts_per_minute, window=60.0)
    pairing = AttemptLimiter("pairing", limit=config.failed_attempts_per_minute, window=60.0)
    routes = [
        *Pages(storage, config, sign_in).routes(),
        *ClientApi(storage, hub, config, answers=answers or AnswerTokens()).routes(),
        *SignInsApi(storage, config).routes(),
        *(settings := SettingsApi(storage, hub, config)).routes(),
        *GrantsApi(storage, settings, config).routes(),
        *PushApi(storage, config).routes(),
        *ChangesApi(storage, hub, config, tokens).routes(),
        *DaemonApi(storage, hub, config, tokens, pairing).routes(),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_disconnect,
            Exception: _internal_error,
        },
    )
