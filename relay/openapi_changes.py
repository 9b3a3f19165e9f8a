"""The OpenAPI paths of a session's work (:mod:`relay.changes_api`): its changes, one
file's diff, the actions that land or discard it, and kept worktrees. Part of the document
:mod:`relay.openapi` serves, kept beside it so that file stays one screenful of contract
per subject."""

from __future__ import annotations

from typing import Any

from wire import (
    Changes,
    DiscardLoss,
    FileChange,
    FileDiff,
    Hunk,
    KeptWorktree,
    KeptWorktrees,
    Landed,
    LandRequest,
)

from .openapi import _errors, _json, _operation, _path_param, _ref

__all__ = ["CHANGES_COMPONENTS", "changes_paths"]

CHANGES_COMPONENTS: tuple[type[Any], ...] = (
    Changes,
    FileChange,
    DiscardLoss,
    FileDiff,
    Hunk,
    KeptWorktrees,
    KeptWorktree,
    LandRequest,
    Landed,
)


def _r(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    return ok | _errors(*errors)


def changes_paths() -> dict[str, Any]:
    session_id = _path_param("session_id", "A session id (`ses_...`).")
    environment_id = _path_param("environment_id", "An environment id (`env_...`).")
    slug = _path_param("slug", "A kept worktree's name (its directory under `.rcd/worktrees`).")
    action = _path_param("action", "`commit`, `merge`, `push` or `discard`.") | {
        "schema": {"type": "string", "enum": ["commit", "merge", "push", "discard"]}
    }
    path = {
        "name": "path",
        "in": "query",
        "description": "One changed file (its `path` in the listing): answers its diff.",
        "schema": {"type": "string"},
    }
    read = _r(
        {
            "200": {
                "description": "The changes (`Changes`), or with `path` the file's diff "
                "(`FileDiff`).",
                "content": {
                    "application/json": {"schema": {"oneOf": [_ref("Changes"), _ref("FileDiff")]}}
                },
            }
        },
        400, 401, 404, 409,
    )  # fmt: skip
    act = _r({"200": _json(_ref("Landed"), "Done: what happened.")}, 400, 401, 404, 409, 413)
    what = (
        "The daemon answers (up to 30 s; a push 150 s); refusals name the files concerned "
        "(`error.files`)."
    )
    return {
        "/api/sessions/{session_id}/changes": {
            "get": _operation(
                "The session's work against the commit it started from, committed and not; "
                "the relay stores none of it.",
                read,
                parameters=[session_id, path],
            )
        },
        "/api/sessions/{session_id}/changes/{action}": {
            "post": _operation(
                "Commit (`message`), merge into the branch it started from, push, or discard "
                "(`confirm`: the token of `Changes.discard`). " + what,
                act,
                parameters=[session_id, action],
                body="LandRequest",
            )
        },
        "/api/environments/{environment_id}/worktrees": {
            "get": _operation(
                "Worktrees kept because they hold work, with the session that left each.",
                _r({"200": _json(_ref("KeptWorktrees"), "The kept worktrees.")}, 401, 404, 409),
                parameters=[environment_id],
            )
        },
        "/api/environments/{environment_id}/worktrees/{slug}/changes": {
            "get": _operation(
                "A kept worktree's work, as for a session.",
                read,
                parameters=[environment_id, slug, path],
            )
        },
        "/api/environments/{environment_id}/worktrees/{slug}/changes/{action}": {
            "post": _operation(
                "Land or discard a kept worktree's work, as for a session. " + what,
                act,
                parameters=[environment_id, slug, action],
                body="LandRequest",
            )
        },
    }
