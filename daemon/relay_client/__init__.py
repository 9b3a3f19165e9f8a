"""The daemon's side of the relay protocol (see :mod:`wire.protocol`), over one injected
``httpx.AsyncClient``. Every call is outbound; errors become :mod:`daemon.errors`.

Credentials: the long-lived environment credential is sent only to register and to mint
access tokens. Everything else carries a short-lived access token: the *link* token for the
downlink, acks, goodbye and uplink requests, and one *session* token per session for its
events. Tokens are minted on first use, renewed once 80 % of their life has passed, and a
401 on a token (expired, or unknown after a relay restart) mints a new one and retries once.
A 401 on the credential itself means it was revoked: that :class:`RelayRejected` is final.

One module per concern, :class:`RelayClient` (:mod:`.client`) putting them together:

* :mod:`.calls`: one JSON call and the one mapping of failures to errors;
* :mod:`.tokens`: the token cache and the ``httpx.Auth`` that retries on a stale token;
* :mod:`.uplink_requests`: batches of many sessions on few requests, with the acks;
* :mod:`.spare`: the uplink request opened ahead of its batch;
* :mod:`.downlink`: the directives' event stream.
"""

from .client import RelayClient
from .tokens import RENEW_AFTER

__all__ = ["RENEW_AFTER", "RelayClient"]
