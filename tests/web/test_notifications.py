"""Notifications in the web app, in real Chromium against a real relay: a phone turns them
on (the service worker registers, the browser's subscription reaches the relay for this
sign-in), chooses what wakes it, and a push handed to its service worker is shown as one
notification per session, replaced in place.

Chromium's own push service (Google's) is out of reach here: the page's
``pushManager.subscribe`` is the one thing stood in for (it answers a subscription with
real P-256 keys, as the browser would), and the push is handed to the service worker
through the DevTools protocol (``ServiceWorker.deliverPushMessage``), as the browser does
when its push service delivers one."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .browser import PHONE, Page, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _subscription() -> dict[str, Any]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": f"https://push.example/send/{secrets.token_hex(8)}",
        "expirationTime": None,
        "keys": {"p256dh": _b64(point), "auth": _b64(secrets.token_bytes(16))},
    }


#: The browser's push service stood in for: subscribe() answers ``SUBSCRIPTION``.
STAND_IN = """
(subscription) => {
  let current = null;
  const make = (key) => ({
    endpoint: subscription.endpoint,
    options: { applicationServerKey: key, userVisibleOnly: true },
    toJSON: () => subscription,
    unsubscribe: async () => { current = null; return true; },
  });
  PushManager.prototype.subscribe = async function (options) {
    current = make(options.applicationServerKey.buffer ?? options.applicationServerKey);
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
}
"""


def _api(page: Page, method: str, path: str) -> Any:
    return page.evaluate(
        """async ([method, path]) => {
            const r = await fetch(path, { method, headers: { 'x-requested-with': 'rcd' } });
            return r.status === 204 ? null : r.json();
        }""",
        [method, path],
    )


def _shows(page: Page, expected: list[list[str]]) -> None:
    """Wait until the service worker's notifications are ``expected`` ([title, tag, body],
    in any order)."""
    page.wait_for_function(
        """async (expected) => {
            const reg = await navigator.serviceWorker.ready;
            const shown = (await reg.getNotifications()).map((n) => [n.title, n.tag, n.body]);
            const key = (rows) => JSON.stringify(rows.map((r) => JSON.stringify(r)).sort());
            return key(shown) === key(expected);
        }""",
        arg=expected,
    )


def test_a_phone_turns_notifications_on_and_a_push_shows_one_per_session(
    stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    subscription = _subscription()
    phone = browsing.sign_in(stack, **PHONE)
    phone.context.grant_permissions(["notifications"], origin=stack.relay.url)
    phone.context.add_init_script(f"({STAND_IN})({json.dumps(subscription)})")
    phone.goto(f"{stack.relay.url}/?devices")
    panel = phone.locator("section.notify")
    expect(panel).to_contain_text("Off: turn on")
    panel.get_by_role("button", name="Turn on").click()
    expect(panel.locator(".notify-status")).to_contain_text("On: this device is woken")

    listed = _api(phone, "GET", "/api/push/subscriptions")["subscriptions"]
    assert [s["endpoint"] for s in listed] == [subscription["endpoint"]]
    assert listed[0]["settings"]["offline"] is False
    # A device token's list is its own: the phone's subscription is not in it.
    assert stack.api.get("/api/push/subscriptions").json() == {"subscriptions": []}

    panel.get_by_label("A machine went offline").check()
    expect(panel.get_by_label("A machine went offline")).to_be_checked()
    listed = _api(phone, "GET", "/api/push/subscriptions")["subscriptions"]
    assert listed[0]["settings"]["offline"] is True
    no_horizontal_scroll(phone)
    phone.screenshot(path=artifacts / "phone-notifications.png", full_page=True)

    # The service worker shows what the relay pushes, one notification per session.
    cdp = phone.context.new_cdp_session(phone)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(r for r in e["registrations"] if not r["isDeleted"]),
    )
    cdp.send("ServiceWorker.enable")
    for _ in range(250):
        if registrations:
            break
        phone.wait_for_timeout(20)  # clock: CDP events arrive only while the driver waits
    [registration] = {r["registrationId"]: r for r in registrations}.values()
    assert registration["scopeURL"] == f"{stack.relay.url}/"

    def push(note: dict[str, Any]) -> None:
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": stack.relay.url,
                "registrationId": registration["registrationId"],
                "data": json.dumps(note),
            },
        )

    asks = {
        "kind": "permission",
        "tag": "session-ses_1",
        "session_id": "ses_1",
        "title": "fix the tests: allow Bash?",
        "body": "make test",
        "url": "/?session=ses_1",
        "request": {"id": "req-1", "tool": "Bash", "summary": "make test"},
    }
    push(asks)
    _shows(phone, [["fix the tests: allow Bash?", "session-ses_1", "make test"]])
    push(
        asks | {"kind": "long_turn", "title": "fix the tests: turn done", "body": "after 2 min 5 s"}
    )
    push(asks | {"tag": "session-ses_2", "title": "docs: allow Write?", "body": "README.md"})
    _shows(
        phone,
        [
            ["docs: allow Write?", "session-ses_2", "README.md"],
            ["fix the tests: turn done", "session-ses_1", "after 2 min 5 s"],
        ],
    )

    panel.get_by_role("button", name="Turn off").click()
    expect(panel.locator(".notify-status")).to_contain_text("Off: turn on")
    assert _api(phone, "GET", "/api/push/subscriptions") == {"subscriptions": []}
