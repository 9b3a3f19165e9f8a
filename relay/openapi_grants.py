"""The OpenAPI paths of approval grants (:mod:`relay.grants_api`): listed, asked for and
revoked. Part of the document :mod:`relay.openapi` serves."""

from __future__ import annotations

from typing import Any

from wire import Grant, GrantRequest, Grants

from .openapi import _errors, _json, _operation, _path_param, _ref

__all__ = ["GRANTS_COMPONENTS", "grants_paths"]

GRANTS_COMPONENTS: tuple[type[Any], ...] = (Grant, GrantRequest, Grants)


def grants_paths() -> dict[str, Any]:
    environment_id = _path_param("environment_id", "An environment id (`env_...`).")
    grant_id = _path_param("grant_id", "A grant id (`grt_...`).")
    pending = {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string"}},
        "additionalProperties": False,
    }
    listed = _json(_ref("Grants"), "The grants in force.")
    return {
        "/api/environments/{environment_id}/grants": {
            "get": _operation(
                "The approval grants in force in the environment, as its daemon last reported "
                "them.",
                {"200": listed} | _errors(401, 404, 409),
                parameters=[environment_id],
            ),
            "post": _operation(
                'Ask for an approval grant: the daemon answers "allow" for the permission '
                "requests it covers until it ends (by the daemon's clock) or is revoked. "
                "Waits up to 10 s for the daemon.",
                {
                    "201": _json(_ref("Grant"), "Taken: the grant, dated by the daemon."),
                    "202": _json(pending, "Queued: the id it will have."),
                }
                | _errors(400, 401, 404, 409, 413),
                parameters=[environment_id],
                body="GrantRequest",
            ),
        },
        "/api/environments/{environment_id}/grants/{grant_id}": {
            "delete": _operation(
                "Revoke a grant: from the daemon's answer on, it covers nothing. Waits up to "
                "10 s for the daemon.",
                {"200": listed, "202": _json(pending, "Queued.")} | _errors(401, 404, 409),
                parameters=[environment_id, grant_id],
            )
        },
    }
