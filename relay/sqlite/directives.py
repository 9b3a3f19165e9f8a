"""Directives: each environment's queue of work and inputs for its daemon, numbered densely
(``dseq``, from 1), read through its one live downlink and deleted once acknowledged."""

from __future__ import annotations

from typing import cast

from wire import Directive, decode_json, encode_json

from ..records import DownlinkRead, QueuedDirective
from .connection import SqliteConnection

__all__ = ["acknowledge", "acknowledge_directives", "enqueue", "read_downlink"]


def enqueue(db: SqliteConnection, environment_id: str, directive: Directive) -> int:
    """Queue ``directive`` for the environment's daemon; its dseq. (Inside a write
    transaction.)"""
    (dseq,) = db.execute(
        "UPDATE environments SET last_dseq = last_dseq + 1 WHERE id = ? RETURNING last_dseq",
        (environment_id,),
    ).fetchall()[0]
    db.execute(
        "INSERT INTO directives (environment_id, dseq, body, created_at) VALUES (?, ?, ?, ?)",
        (environment_id, dseq, encode_json(directive, Directive), db.now()),
    )
    return cast(int, dseq)


def read_downlink(
    db: SqliteConnection, environment_id: str, link_id: str, after: int, limit: int
) -> DownlinkRead:
    """Directives after dseq ``after``, or ``current=False`` once ``link_id`` is replaced."""
    with db.read():
        row = db.execute(
            "SELECT link_id FROM environments WHERE id = ?", (environment_id,)
        ).fetchone()
        if row is None or row[0] != link_id:
            return DownlinkRead(current=False, directives=[])
        rows = db.execute(
            "SELECT dseq, body FROM directives WHERE environment_id = ? AND dseq > ?"
            " ORDER BY dseq LIMIT ?",
            (environment_id, after, limit),
        ).fetchall()
    directives = [QueuedDirective(dseq=r[0], directive=decode_json(Directive, r[1])) for r in rows]
    return DownlinkRead(current=True, directives=directives)


def acknowledge_directives(db: SqliteConnection, environment_id: str, through: int) -> None:
    with db.write():
        acknowledge(db, environment_id, through)


def acknowledge(db: SqliteConnection, environment_id: str, through: int) -> None:
    """The daemon has applied the directives through dseq ``through``. (Inside a write
    transaction.)"""
    db.execute(
        "UPDATE environments SET acked_dseq = MAX(acked_dseq, MIN(?, last_dseq)) WHERE id = ?",
        (through, environment_id),
    )
    # Applied directives are never needed again: the daemon resumes after them.
    db.execute(
        "DELETE FROM directives WHERE environment_id = ?"
        " AND dseq <= (SELECT acked_dseq FROM environments WHERE id = ?)",
        (environment_id, environment_id),
    )
