"""The OpenAPI paths of Web Push (:mod:`relay.push_api`): the relay's key, and the asking
device's subscriptions with what notifies each. Part of the document :mod:`relay.openapi`
serves."""

from __future__ import annotations

from typing import Any

from wire import PushKey, PushKeys, PushSettings, PushSubscribe, PushSubscriptionInfo

from .openapi import _errors, _json, _operation, _path_param, _ref

__all__ = ["PUSH_COMPONENTS", "push_paths"]

PUSH_COMPONENTS: tuple[type[Any], ...] = (
    PushKey,
    PushKeys,
    PushSettings,
    PushSubscribe,
    PushSubscriptionInfo,
)


def push_paths() -> dict[str, Any]:
    subscription_id = _path_param("subscription_id", "A push subscription id (`push_...`).")
    one = _json(_ref("PushSubscriptionInfo"), "The subscription.")
    listed = {
        "type": "object",
        "required": ["subscriptions"],
        "properties": {"subscriptions": {"type": "array", "items": _ref("PushSubscriptionInfo")}},
    }
    return {
        "/api/push/key": {
            "get": _operation(
                "The relay's VAPID public key (base64url), the `applicationServerKey` of a "
                "browser's `pushManager.subscribe()`.",
                {"200": _json(_ref("PushKey"), "The key.")} | _errors(401),
            )
        },
        "/api/push/subscriptions": {
            "get": _operation(
                "The asking device's push subscriptions and what notifies each.",
                {"200": _json(listed, "The subscriptions.")} | _errors(401),
            ),
            "post": _operation(
                "Subscribe this device: the browser's `PushSubscription.toJSON()`, with "
                "`settings` (defaults when left out). The same endpoint again replaces it.",
                {"201": one} | _errors(400, 401, 403, 413),
                body="PushSubscribe",
            ),
        },
        "/api/push/subscriptions/{subscription_id}/settings": {
            "put": _operation(
                "What notifies this subscription (one of the asking device's).",
                {"200": one} | _errors(400, 401, 404, 413),
                parameters=[subscription_id],
                body="PushSettings",
            )
        },
        "/api/push/subscriptions/{subscription_id}": {
            "delete": _operation(
                "Unsubscribe (one of the asking device's subscriptions).",
                {"204": {"description": "Unsubscribed."}} | _errors(401, 404),
                parameters=[subscription_id],
            )
        },
    }
