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

import json
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from testkit.fakes.push_service import b64url
from testkit.waiting import eventually_sync

from .browser import CHROMIUM, CHROMIUM_ARGS, PHONE, Browser, Page, expect
from .browsing import Browsing, no_horizontal_scroll
from .push_thread import push_service_thread
from .stack import Stack


def _subscription() -> dict[str, Any]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": f"https://push.example/send/{secrets.token_hex(8)}",
        "expirationTime": None,
        "keys": {"p256dh": b64url(point), "auth": b64url(secrets.token_bytes(16))},
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

    def setting(name: str) -> Any:
        return _api(phone, "GET", "/api/push/subscriptions")["subscriptions"][0]["settings"][name]

    panel.get_by_label("A machine went offline").check()
    eventually_sync(lambda: setting("offline") is True, timeout=15, what="offline on")
    panel.get_by_label("How long a turn must run").select_option("300")
    eventually_sync(lambda: setting("long_turn_seconds") == 300, timeout=15, what="5 min")
    no_horizontal_scroll(phone)
    phone.screenshot(path=artifacts / "phone-notifications.png", full_page=True)

    # The service worker shows what the relay pushes, one notification per session.
    registration = _registration(phone)
    assert registration["scopeURL"] == f"{stack.relay.url}/"

    def push(note: dict[str, Any]) -> None:
        _deliver(phone, stack, registration, note)

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

    # Dropped by the relay meanwhile (its push service said gone, another tab turned it
    # off): turning off still turns off.
    [mine] = _api(phone, "GET", "/api/push/subscriptions")["subscriptions"]
    assert _api(phone, "DELETE", f"/api/push/subscriptions/{mine['id']}") is None
    panel.get_by_role("button", name="Turn off").click()
    expect(panel.locator(".notify-status")).to_contain_text("Off: turn on")
    assert _api(phone, "GET", "/api/push/subscriptions") == {"subscriptions": []}


def test_allow_from_the_notification_makes_the_real_agent_write(
    claude_stack: Stack, browsing: Browsing
) -> None:
    """The whole way: the real CLI asks to write, the relay pushes to the phone's push
    service, the service worker shows Allow and Deny, and its Allow — with the request's own
    credential, the app never opened — makes the agent write the file."""
    stack = claude_stack
    key = stack.api.get("/api/push/key").json()["public_key"]
    with push_service_thread() as pushes:
        subscription = pushes.subscribe(key)
        phone = browsing.sign_in(stack, **PHONE)
        phone.context.grant_permissions(["notifications"], origin=stack.relay.url)
        phone.context.add_init_script(f"({STAND_IN})({json.dumps(subscription.as_json())})")
        phone.goto(f"{stack.relay.url}/?devices")
        panel = phone.locator("section.notify")
        panel.get_by_role("button", name="Turn on").click()
        expect(panel.locator(".notify-status")).to_contain_text("On: this device is woken")

        target = stack.project / "from-the-notification.txt"
        created = stack.api.post(
            f"/api/environments/{stack.environment_id}/sessions",
            json={"title": "notes", "prompt": f"write {target} allowed from a notification"},
        )
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        [delivery] = pushes.wait_for(subscription.id)
        note = delivery.json()
        assert note["kind"] == "permission" and note["request"]["tool"] == "Write"

        registration = _registration(phone)
        shown = [["notes: allow Write?", f"session-{session_id}", str(target)]]
        assert _actions(phone, stack, registration, note, shown) == ["Allow", "Deny"]
        assert not target.exists()

        _act(phone, stack, registration, note, shown, "allow")
        stack.wait_events(session_id, lambda events: any(
            e["kind"] == "permission_resolved" for e in events))  # fmt: skip
        events = stack.wait_events(session_id, lambda events: any(
            e["kind"] == "turn_result" for e in events))  # fmt: skip
        assert target.read_text() == "allowed from a notification"
        [resolved] = [e for e in events if e["kind"] == "permission_resolved"]
        assert resolved["data"]["decision"] == "allow"
        assert resolved["data"]["origin"] == "web (Headless Chrome on Linux) (notification)"

        # The same notification again (answered meanwhile): a quiet "already answered".
        _act(phone, stack, registration, note, shown, "deny")
        _shows(phone, [["Already answered", f"session-{session_id}", "Write: answered elsewhere."]])


def _registration(page: Page) -> dict[str, Any]:
    cdp = page.context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(r for r in e["registrations"] if not r["isDeleted"]),
    )
    cdp.send("ServiceWorker.enable")
    for _ in range(250):
        if registrations:
            break
        page.wait_for_timeout(20)  # clock: CDP events arrive only while the driver waits
    [registration] = {r["registrationId"]: r for r in registrations}.values()
    return registration | {"cdp": cdp}


def _deliver(page: Page, stack: Stack, registration: dict[str, Any], note: dict[str, Any]) -> None:
    registration["cdp"].send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": stack.relay.url,
            "registrationId": registration["registrationId"],
            "data": json.dumps(note),
        },
    )


def _act(
    page: Page,
    stack: Stack,
    registration: dict[str, Any],
    note: dict[str, Any],
    shown: list[list[str]],
    action: str,
) -> None:
    """What a tap on the notification's button does, through the worker's test hook. A
    headless browser may take a shown notification down again before the hook finds it:
    then it is pushed again (the relay's push, as the push service would redeliver it)."""
    for _ in range(5):
        if not _shows_now(page, shown):
            _deliver(page, stack, registration, note)
            _shows(page, shown)
        found = page.evaluate(
            """async ([tag, action]) => {
                const worker = (await navigator.serviceWorker.ready).active;
                const done = new Promise((resolve) => {
                    navigator.serviceWorker.addEventListener('message', (event) => {
                        const data = event.data;
                        if (data?.type === 'rcd-notification-action-done') resolve(data.found);
                    });
                });
                worker.postMessage({ type: 'rcd-notification-action', tag, action });
                return done;
            }""",
            [note["tag"], action],
        )
        if found:
            return
    raise AssertionError(f"no notification tagged {note['tag']} to act on")


def _actions(
    page: Page,
    stack: Stack,
    registration: dict[str, Any],
    note: dict[str, Any],
    shown: list[list[str]],
) -> list[str]:
    """The buttons of the notification the push shows, read as it is shown (pushed again if
    a headless browser took it down first)."""
    for _ in range(5):
        _deliver(page, stack, registration, note)
        _shows(page, shown)
        found: list[list[str]] = page.evaluate(
            """async (tag) => (await (await navigator.serviceWorker.ready).getNotifications({tag}))
                .map((n) => n.actions.map((a) => a.title))""",
            note["tag"],
        )
        if found:
            return found[0]
    raise AssertionError(f"no notification tagged {note['tag']} stayed to be read")


def _shows_now(page: Page, expected: list[list[str]]) -> bool:
    return bool(
        page.evaluate(
            """async (expected) => {
                const reg = await navigator.serviceWorker.ready;
                const shown = (await reg.getNotifications()).map((n) => [n.title, n.tag, n.body]);
                return JSON.stringify(shown) === JSON.stringify(expected);
            }""",
            expected,
        )
    )


def test_the_app_installs_to_the_home_screen(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    """What Chromium checks before it offers "Install app" (a manifest with a name, a start
    URL, a standalone display and an icon it can use), through the DevTools protocol, in a
    profile of its own (Chromium installs nothing from an incognito one)."""
    context = browser.browser_type.launch_persistent_context(
        tmp_path / "profile", executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, **PHONE
    )
    try:
        page = context.new_page()
        page.goto(stack.relay.login_link())
        expect(page.get_by_role("heading", name="Environments")).to_be_visible()
        cdp = context.new_cdp_session(page)
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [], manifest["errors"]
        errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
        assert errors == [], errors
        fields = json.loads(manifest["data"])
        assert fields["display"] == "standalone" and fields["start_url"] == "/"
    finally:
        context.close()
