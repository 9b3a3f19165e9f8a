"""One request to the relay and the mapping of its failures to :mod:`daemon.errors`.

A relay's error answer (``{"error": {"code", "message"}}``, or anything else with a 4xx or
5xx status) becomes :class:`RelayRejected` (see :func:`daemon.transport.rejection`); a
connection that fails, a certificate refused or a call over its time becomes
:class:`RelayUnreachable` (see :func:`daemon.transport.unreachable`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import httpx
import trio

import wire

from ..errors import RelayRejected, RelayUnreachable
from ..transport import rejection, unreachable

__all__ = ["TOKEN_CODES", "Calls", "is_stale_token", "raise_for_error"]

#: 401 codes that a fresh access token cures (it expired, or the relay restarted and no
#: longer knows it). Any other 401 (``credential_revoked``, say) is final.
TOKEN_CODES = frozenset({"token_expired", "invalid_token"})


def raise_for_error(response: httpx.Response) -> None:
    """Raise :class:`RelayRejected` for an error answer (its body must be read)."""
    error = rejection(response)
    if error is not None:
        raise error


def is_stale_token(error: RelayRejected) -> bool:
    """Whether the access token an answer refused should be replaced and the call tried
    again (once): see :data:`TOKEN_CODES`."""
    return error.status == 401 and error.code in TOKEN_CODES


@attrs.frozen(eq=False)
class Calls:
    """JSON calls to one relay over the daemon's one ``httpx.AsyncClient``."""

    http: httpx.AsyncClient
    relay: str
    #: Seconds a whole call may take, its token's minting and retry included.
    timeout: float

    def url(self, path: str) -> str:
        return self.relay + path

    def unreachable(self, exc: BaseException) -> RelayUnreachable:
        """The error for a request that failed on its way (``exc``: httpx's, or httpx-sse's)."""
        return unreachable(self.relay, exc, str(exc) or type(exc).__name__)

    def too_slow(self, method: str, path: str) -> RelayUnreachable:
        return RelayUnreachable(self.relay, f"{method} {path} took over {self.timeout}s")

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: httpx.Auth | None,
        on_answer: Callable[[httpx.Response], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send ``body`` (a wire value, or None) and return the parsed JSON answer (None for
        an empty one).

        Raises :class:`RelayRejected` for an error answer, :class:`RelayUnreachable` when
        the request fails or the call takes over :attr:`timeout` (whatever ``auth`` does
        on the way, such as minting a token, counts). Cancellation abandons the request.
        """
        try:
            with trio.fail_after(self.timeout):
                response = await self.http.request(
                    method,
                    self.url(path),
                    content=None if body is None else wire.encode_json(body),
                    headers={"Content-Type": "application/json", **(headers or {})},
                    auth=auth,
                )
        except trio.TooSlowError:
            raise self.too_slow(method, path) from None
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        raise_for_error(response)
        if on_answer is not None:
            on_answer(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
