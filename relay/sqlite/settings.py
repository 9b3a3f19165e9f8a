"""Table functions for the environments' settings (see :mod:`wire.settings`): the view its
daemon last reported, the updates queued for it, and what its daemon said it does
(:data:`wire.DAEMON_FEATURES`)."""

from __future__ import annotations

from wire import SettingsView, UpdateSettings, WorkspaceRequest, decode_json, encode_json

from ..errors import EnvironmentOffline, NotFound
from .connection import SqliteConnection
from .directives import enqueue

__all__ = [
    "environment_features",
    "queue_settings",
    "read_settings",
    "save_features",
    "save_settings",
]


def save_settings(db: SqliteConnection, environment_id: str, view: SettingsView) -> None:
    """Keep the settings the environment's daemon reported (its capacity and default spawn
    mode with them: what the relay enforces and shows)."""
    with db.write():
        db.execute(
            "UPDATE environments SET settings = ?, capacity = ?, spawn = ?, updated_at = ?"
            " WHERE id = ?",
            (encode_json(view), view.capacity, view.spawn, db.now(), environment_id),
        )


def read_settings(db: SqliteConnection, environment_id: str) -> SettingsView | None:
    """The settings last reported; None when its daemon never did. NotFound if there is
    no such environment."""
    row = db.execute("SELECT settings FROM environments WHERE id = ?", (environment_id,)).fetchone()
    if row is None:
        raise NotFound(f"no environment {environment_id}")
    return None if row[0] is None else decode_json(SettingsView, row[0])


def queue_settings(
    db: SqliteConnection, environment_id: str, update: UpdateSettings | WorkspaceRequest
) -> int:
    """Queue ``update`` (or a question about a session's work) for the environment's
    daemon; its dseq. NotFound, or EnvironmentOffline: settings are the daemon's to keep,
    so it must be there to take them (and to answer)."""
    with db.write():
        row = db.execute(
            "SELECT name, link_id FROM environments WHERE id = ?", (environment_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no environment {environment_id}")
        if row[1] is None:
            raise EnvironmentOffline(row[0])
        return enqueue(db, environment_id, update)


def save_features(db: SqliteConnection, environment_id: str, features: list[str]) -> None:
    """What the environment's daemon said it does when it last registered."""
    with db.write():
        db.execute(
            "UPDATE environments SET features = ? WHERE id = ?",
            (",".join(sorted(features)), environment_id),
        )


def environment_features(db: SqliteConnection, environment_id: str) -> frozenset[str]:
    """What its daemon said it does (nothing, for one registered before features were
    kept). NotFound if there is no such environment."""
    row = db.execute("SELECT features FROM environments WHERE id = ?", (environment_id,)).fetchone()
    if row is None:
        raise NotFound(f"no environment {environment_id}")
    return frozenset(f for f in (row[0] or "").split(",") if f)
