"""Access tokens: the cache that mints and renews them, and the ``httpx.Auth`` that puts
one on a request and replaces it when the relay refuses it.

The long-lived environment credential (:class:`Bearer`) is sent only to register and to
mint access tokens. Everything else carries a short-lived access token of one *scope*: the
link (None) for the downlink, acks, goodbye and uplink requests; a session (its id) for
that session's events. A token is minted on first use and renewed once
:data:`RENEW_AFTER` of its life has passed; a 401 that a fresh token cures
(:func:`~.calls.is_stale_token`) drops it, and :class:`TokenAuth` sends the request again
once with a new one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import attrs
import httpx
import structlog
import trio

import wire

from ..transport import rejection
from .calls import is_stale_token

__all__ = ["RENEW_AFTER", "Bearer", "Token", "TokenAuth", "Tokens"]

log = structlog.get_logger("daemon.relay")

#: A token is renewed once this share of its lifetime has passed.
RENEW_AFTER = 0.8


@attrs.frozen
class Token:
    value: str
    #: ``trio.current_time()`` after which the token is renewed before use.
    renew_at: float


@attrs.define(eq=False)
class Tokens:
    """Access tokens by scope (None: the link; else a session id), each minted by ``mint``
    (one request to the relay) when missing or due for renewal, one mint at a time per
    scope."""

    mint: Callable[[str | None], Awaitable[wire.AccessToken]]
    _tokens: dict[str | None, Token] = attrs.field(factory=dict, init=False)
    _minting: dict[str | None, trio.Lock] = attrs.field(factory=dict, init=False)
    #: Access tokens minted so far.
    minted: int = attrs.field(default=0, init=False)

    async def get(self, scope: str | None) -> Token:
        """The scope's token, minted first if there is none or it is due for renewal;
        raises what ``mint`` raises."""
        token = self._tokens.get(scope)
        if token is not None and trio.current_time() < token.renew_at:
            return token
        lock = self._minting.setdefault(scope, trio.Lock())
        async with lock:
            # Whoever held the lock may have minted it already.
            token = self._tokens.get(scope)
            if token is not None and trio.current_time() < token.renew_at:
                return token
            asked_at = trio.current_time()
            minted = await self.mint(scope)
            self.minted += 1
            token = self._tokens[scope] = Token(
                minted.token, asked_at + RENEW_AFTER * max(0.0, minted.expires_in)
            )
            return token

    def drop(self, scope: str | None, value: str) -> None:
        """Forget the scope's token ``value`` (refused by the relay), unless it was replaced."""
        token = self._tokens.get(scope)
        if token is not None and token.value == value:
            del self._tokens[scope]

    def forget(self, scope: str) -> None:
        """Drop a session's token once nothing more will be sent for it."""
        self._tokens.pop(scope, None)
        self._minting.pop(scope, None)

    def clear(self) -> None:
        self._tokens.clear()


class _AsyncOnly(httpx.Auth):
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError(f"{type(self).__name__} works with httpx.AsyncClient only")


class Bearer(_AsyncOnly):
    """A fixed bearer credential (the environment credential, or a token already chosen)."""

    def __init__(self, value: str) -> None:
        self.value = value

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {self.value}"
        yield request


class TokenAuth(_AsyncOnly):
    """The access token of ``scope`` on a request. When the relay refuses it as expired or
    unknown, the token is dropped and, with ``retry``, the request sent once more with a
    fresh one (its body must then be replayable: not a stream). After the request,
    :attr:`used` is the token its answer was given for."""

    def __init__(self, tokens: Tokens, scope: str | None, *, retry: bool = True) -> None:
        self.tokens = tokens
        self.scope = scope
        self.retry = retry
        self.used: Token | None = None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        for attempt in range(2 if self.retry else 1):
            self.used = token = await self.tokens.get(self.scope)
            request.headers["Authorization"] = f"Bearer {token.value}"
            response = yield request
            if response.status_code != 401:
                return
            # Only a refusal is read here: a success may be a stream that never ends.
            await response.aread()
            error = rejection(response)
            if error is None or not is_stale_token(error):
                return
            self.tokens.drop(self.scope, token.value)
            if attempt == 0 and self.retry:
                scope = "link" if self.scope is None else "session"
                log.info("token_refresh", scope=scope, code=error.code)
