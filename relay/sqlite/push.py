"""Web Push subscriptions, each held by the signed-in device that made it: a browser's
sign-in (by its web session's hash) or a device token (by the token's hash, so a new token
given a revoked one's name holds none of its subscriptions). A subscription whose device
signed out, expired or was revoked is never sent to, and is dropped the next time the
subscriptions are read."""

from __future__ import annotations

from typing import Any

from wire import PushSettings, decode_json, encode_json

from ..errors import NotFound, Unauthenticated
from ..ids import new_id
from ..records import WEB_ORIGIN, ClientPrincipal, PushSubscriptionRecord
from ..useragent import describe_user_agent
from .connection import SqliteConnection

__all__ = [
    "add_push_subscription",
    "delete_push_subscription",
    "device_push_subscriptions",
    "drop_push_subscription",
    "live_push_subscriptions",
    "push_answerer",
    "push_sent",
    "set_push_settings",
]

_COLUMNS = "id, endpoint, p256dh, auth, settings, created_at, last_sent_at"
#: The subscriptions whose device still holds a current sign-in or token.
_LIVE = (
    "(owner_kind = 'cookie' AND EXISTS (SELECT 1 FROM web_sessions w"
    " WHERE w.session_hash = owner AND w.expires_at > ?))"
    " OR (owner_kind = 'token' AND EXISTS (SELECT 1 FROM device_tokens d"
    " WHERE d.token_hash = owner))"
)


def _owner(db: SqliteConnection, client: ClientPrincipal) -> tuple[str, str]:
    if client.via == "cookie":
        assert client.session_hash is not None
        return ("cookie", client.session_hash)
    row = db.execute(
        "SELECT token_hash FROM device_tokens WHERE name = ?", (client.name,)
    ).fetchone()
    if row is None:
        raise Unauthenticated("unknown or revoked device token")
    return ("token", row[0])


def _record(row: Any) -> PushSubscriptionRecord:
    return PushSubscriptionRecord(
        id=row[0],
        endpoint=row[1],
        p256dh=row[2],
        auth=row[3],
        settings=decode_json(PushSettings, row[4]),
        created_at=row[5],
        last_sent_at=row[6],
    )


def add_push_subscription(
    db: SqliteConnection,
    client: ClientPrincipal,
    endpoint: str,
    p256dh: str,
    auth: str,
    settings: PushSettings | None,
) -> PushSubscriptionRecord:
    """Keep the subscription for ``client``'s device. The same endpoint again (the browser
    subscribing anew, perhaps for another sign-in) replaces the old one, keeping its
    settings when none are given."""
    kind, owner = _owner(db, client)
    with db.write():
        old = db.execute(
            "SELECT settings FROM push_subscriptions WHERE endpoint = ?", (endpoint,)
        ).fetchone()
        if settings is None:
            settings = decode_json(PushSettings, old[0]) if old else PushSettings()
        db.execute("DELETE FROM push_subscriptions WHERE endpoint = ?", (endpoint,))
        row = db.execute(
            "INSERT INTO push_subscriptions (id, endpoint, owner_kind, owner, p256dh, auth,"
            f" settings, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
            (new_id("push"), endpoint, kind, owner, p256dh, auth, encode_json(settings), db.now()),
        ).fetchone()
    return _record(row)


def device_push_subscriptions(
    db: SqliteConnection, client: ClientPrincipal
) -> list[PushSubscriptionRecord]:
    """The subscriptions ``client``'s device holds, oldest first."""
    kind, owner = _owner(db, client)
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM push_subscriptions WHERE owner_kind = ? AND owner = ?"
        " ORDER BY created_at, id",
        (kind, owner),
    ).fetchall()
    return [_record(r) for r in rows]


def set_push_settings(
    db: SqliteConnection, client: ClientPrincipal, subscription_id: str, settings: PushSettings
) -> PushSubscriptionRecord:
    """Change what notifies one of ``client``'s subscriptions; NotFound for any other."""
    kind, owner = _owner(db, client)
    with db.write():
        row = db.execute(
            "UPDATE push_subscriptions SET settings = ? WHERE id = ? AND owner_kind = ?"
            f" AND owner = ? RETURNING {_COLUMNS}",
            (encode_json(settings), subscription_id, kind, owner),
        ).fetchone()
    if row is None:
        raise NotFound(f"this device has no push subscription {subscription_id}")
    return _record(row)


def delete_push_subscription(
    db: SqliteConnection, client: ClientPrincipal, subscription_id: str
) -> None:
    """Unsubscribe one of ``client``'s subscriptions; NotFound for any other."""
    kind, owner = _owner(db, client)
    with db.write():
        gone = db.execute(
            "DELETE FROM push_subscriptions WHERE id = ? AND owner_kind = ? AND owner = ?",
            (subscription_id, kind, owner),
        ).rowcount
    if not gone:
        raise NotFound(f"this device has no push subscription {subscription_id}")


def live_push_subscriptions(db: SqliteConnection) -> list[PushSubscriptionRecord]:
    """Every subscription of a device still signed in; those of devices signed out,
    expired or revoked are deleted on the way."""
    now = db.now()
    with db.write():
        db.execute(f"DELETE FROM push_subscriptions WHERE NOT ({_LIVE})", (now,))
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM push_subscriptions ORDER BY created_at, id"
        ).fetchall()
    return [_record(r) for r in rows]


def drop_push_subscription(db: SqliteConnection, subscription_id: str) -> None:
    """Forget a subscription its push service says is gone (404, 410), or whose key is
    unusable (by id: the browser may have subscribed anew at the same endpoint since)."""
    with db.write():
        db.execute("DELETE FROM push_subscriptions WHERE id = ?", (subscription_id,))


def push_sent(db: SqliteConnection, endpoint: str) -> None:
    """Record that the push service took a notification for ``endpoint``."""
    with db.write():
        db.execute(
            "UPDATE push_subscriptions SET last_sent_at = ? WHERE endpoint = ?",
            (db.now(), endpoint),
        )


def push_answerer(db: SqliteConnection, subscription_id: str) -> str | None:
    """Who answers from a notification of this subscription, for the session log ("web
    (Chrome on Android)", a device token's name); None when its device is signed out,
    expired or revoked, or the subscription is gone."""
    row = db.execute(
        f"SELECT owner_kind, owner FROM push_subscriptions WHERE id = ? AND ({_LIVE})",
        (subscription_id, db.now()),
    ).fetchone()
    if row is None:
        return None
    if row[0] == "token":
        name = db.execute("SELECT name FROM device_tokens WHERE token_hash = ?", (row[1],))
        return str(name.fetchone()[0])
    agent = db.execute("SELECT user_agent FROM web_sessions WHERE session_hash = ?", (row[1],))
    return f"{WEB_ORIGIN} ({describe_user_agent(agent.fetchone()[0])})"
