"""The client API's Web Push routes (see ``docs/api.md``, "Notifications"):

- ``GET /api/push/key``: the relay's VAPID public key, for ``pushManager.subscribe``;
- ``GET /api/push/subscriptions``: the asking device's subscriptions and their settings;
- ``POST /api/push/subscriptions``: subscribe (the browser's ``PushSubscription.toJSON()``,
  with ``settings`` optional); the same endpoint again replaces;
- ``PUT /api/push/subscriptions/{id}/settings``: what notifies it;
- ``DELETE /api/push/subscriptions/{id}``: unsubscribe.

A device sees and changes only its own subscriptions. An endpoint must be ``https://`` at a
public host name (:func:`check_endpoint`): the relay posts to it.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import trio
from py_vapid import Vapid02
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wire import PushKey, PushSettings, PushSubscribe, PushSubscriptionInfo, encode

from .auth import authenticate_client
from .config import RelayConfig
from .errors import Forbidden
from .httputil import CLIENT_BODY_LIMIT, decode_body, json_response
from .push import load_vapid_key, public_key_text
from .records import PushSubscriptionRecord
from .storage import Storage

__all__ = ["PushApi", "check_endpoint"]


def check_endpoint(endpoint: str, *, loopback_http: bool) -> None:
    """Refuse (403 ``endpoint_refused``) an endpoint that is no push service's: the relay
    posts to it, so an address (this machine, the LAN, a cloud's metadata service) or a
    plain-HTTP URL never is one (``loopback_http``: the tests' push service on loopback)."""
    host = (urlsplit(endpoint).hostname or "").rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        try:  # what the system's resolver reads as an address: 127.1, 0x7f.1, 10.1
            address = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            address = None
    if endpoint.startswith("http://"):
        if loopback_http and address is not None and address.is_loopback:
            return
        why = "a push service is reached over https"
    elif address is not None or "." not in host or host.endswith((".local", ".localhost")):
        why = "a push service has a public host name, not an address or a local name"
    else:
        return
    raise Forbidden("endpoint_refused", f"{why}: {endpoint[:100]!r} refused")


def info(record: PushSubscriptionRecord) -> PushSubscriptionInfo:
    return PushSubscriptionInfo(
        id=record.id,
        endpoint=record.endpoint,
        settings=record.settings,
        created_at=record.created_at,
        last_sent_at=record.last_sent_at,
    )


@attrs.define(eq=False)
class PushApi:
    storage: Storage
    config: RelayConfig
    _key: Vapid02 | None = None

    def routes(self) -> list[Route]:
        subscriptions = "/api/push/subscriptions"
        return [
            Route("/api/push/key", self.key, methods=["GET"]),
            Route(subscriptions, self.subscriptions, methods=["GET", "POST"]),
            Route(f"{subscriptions}/{{subscription_id}}/settings", self.settings, methods=["PUT"]),
            Route(f"{subscriptions}/{{subscription_id}}", self.unsubscribe, methods=["DELETE"]),
        ]

    async def key(self, request: Request) -> Response:
        await authenticate_client(request, self.storage)
        if self._key is None:
            self._key = await trio.to_thread.run_sync(load_vapid_key, Path(self.config.data_dir))
        return json_response(encode(PushKey(public_key=public_key_text(self._key))))

    async def subscriptions(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        if request.method == "GET":
            found = await self.storage.device_push_subscriptions(client)
            return json_response({"subscriptions": [encode(info(r)) for r in found]})
        body = await decode_body(
            request, PushSubscribe, CLIENT_BODY_LIMIT, self.config.body_deadline
        )
        check_endpoint(body.endpoint, loopback_http=self.config.push_loopback_http)
        record = await self.storage.add_push_subscription(
            client, body.endpoint, body.keys.p256dh, body.keys.auth, body.settings
        )
        return json_response(encode(info(record)), status=201)

    async def settings(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        settings = await decode_body(
            request, PushSettings, CLIENT_BODY_LIMIT, self.config.body_deadline
        )
        record = await self.storage.set_push_settings(
            client, request.path_params["subscription_id"], settings
        )
        return json_response(encode(info(record)))

    async def unsubscribe(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        await self.storage.delete_push_subscription(client, request.path_params["subscription_id"])
        return Response(status_code=204)
