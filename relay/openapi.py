"""The OpenAPI 3.1 document of the client API, served at ``/api/openapi.json``.

Paths are written out here; the schemas of bodies and objects are generated from the
:mod:`wire` attrs classes, so they cannot drift from what the relay decodes. A test checks
that every client route of the app is listed and nothing else.

Longer than our modules should be (about 460 lines), for a reason: most of it is one
document, the client API's every path with its parameters, bodies and answers, meant to be
read top to bottom beside ``docs/api.md``. Cut in two, the contract would be read in two
places.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal

import attrs

from wire import (
    CreateSession,
    EnvironmentInfo,
    ErrorBody,
    ErrorDetail,
    Event,
    PermissionDecision,
    PostMessage,
    Rename,
    SessionInfo,
    SettingsChange,
    SettingsUpdate,
    SettingsView,
    SignInInfo,
)
from wire.api import nonempty
from wire.settings import SCHEMA_KEY

from .httputil import MAX_PARAM

__all__ = ["openapi_document", "schema_of"]

_COMPONENTS: tuple[type[Any], ...] = (
    CreateSession,
    PostMessage,
    PermissionDecision,
    Rename,
    EnvironmentInfo,
    SessionInfo,
    SignInInfo,
    SettingsUpdate,
    SettingsView,
    SettingsChange,
    Event,
    ErrorBody,
    ErrorDetail,
)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return {}
    if attrs.has(tp):
        return _ref(tp.__name__)
    if origin is Literal:
        return {"type": "string", "enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        schema = (
            _type_schema(options[0])
            if len(options) == 1
            else {"anyOf": [_type_schema(a) for a in options]}
        )
        return {"anyOf": [schema, {"type": "null"}]} if len(options) < len(args) else schema
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return {"type": simple[tp]}


def _setting(validator: Any, name: str) -> Any:
    """Attribute ``name`` of a validator among ``validator`` (and/optional wrappers), if
    any: ``max_length`` of ``attrs.validators.max_len``, ``pattern`` of ``matches_re``."""
    inner = getattr(validator, "validator", None)  # optional(...)
    if inner is not None:
        return _setting(inner, name)
    for part in getattr(validator, "_validators", ()):  # and_(...)
        found = _setting(part, name)
        if found is not None:
            return found
    return getattr(validator, name, None)


def _requires_text(validator: Any) -> bool:
    """Whether ``validator`` is (or holds) :func:`wire.api.nonempty`: not blank."""
    if validator is nonempty:
        return True
    return any(_requires_text(part) for part in getattr(validator, "_validators", ()))


def _with_text(schema: dict[str, Any]) -> dict[str, Any]:
    # Not empty, and not only whitespace.
    return schema | {"minLength": 1, "pattern": "\\S"} if schema.get("type") == "string" else schema


def _with_string(schema: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``more`` on its string (of an optional one too)."""
    if schema.get("type") == "string":
        return schema | more
    if "anyOf" in schema:
        return {"anyOf": [_with_string(s, more) for s in schema["anyOf"]]}
    return schema


def schema_of(cl: type[Any]) -> dict[str, Any]:
    """JSON Schema of an attrs wire class: extra keys forbidden, defaults not required."""
    hints = typing.get_type_hints(cl)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cl):
        properties[field.name] = field.metadata.get(SCHEMA_KEY) or _type_schema(hints[field.name])
        if _requires_text(field.validator):
            properties[field.name] = _with_text(properties[field.name])
        max_length = _setting(field.validator, "max_length")
        if isinstance(max_length, int):
            properties[field.name] = _with_string(properties[field.name], {"maxLength": max_length})
        min_length = _setting(field.validator, "min_length")
        if isinstance(min_length, int):
            properties[field.name] = _with_string(properties[field.name], {"minLength": min_length})
        pattern = _setting(field.validator, "pattern")
        if isinstance(pattern, re.Pattern):  # matched whole (re.fullmatch)
            anchored = {"pattern": f"^(?:{pattern.pattern})$"}
            properties[field.name] = _with_string(properties[field.name], anchored)
        if field.default is attrs.NOTHING:
            required.append(field.name)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if public:
        op["security"] = []
    return op


def _paths() -> dict[str, Any]:
    session_id = _path_param("session_id", "A session id (`ses_...`).")
    environment_id = _path_param("environment_id", "An environment id (`env_...`).")
    session_object = _json(_ref("SessionInfo"), "The session.")
    queued = {"type": "object", "additionalProperties": {"type": "string"}}

    def r(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
        return ok | _errors(*errors)

    return {
        "/login": {
            "get": _operation(
                "Sign a browser in with a one-time code from `rcd relay login-link`.",
                r(
                    {
                        "303": {
                            "description": "Signed in: sets the `rcd_session` cookie, goes to `/`."
                        }
                    },
                    401,
                    429,
                ),
                parameters=[
                    {"name": "code", "in": "query", "required": True, "schema": {"type": "string"}}
                ],
                public=True,
            )
        },
        "/logout": {
            "post": _operation(
                "Sign out: ends the cookie session and clears the cookie. With the cookie, "
                "send `X-Requested-With: rcd` as on every cookie-signed write.",
                r({"204": {"description": "Signed out."}}, 403),
                public=True,
            )
        },
        "/api/openapi.json": {
            "get": _operation(
                "This document.",
                {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}}},
                public=True,
            )
        },
        "/api/sign-ins": {
            "get": _operation(
                "List the browsers signed in to the web app, the most recently used first.",
                r(
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "sign_ins": {"type": "array", "items": _ref("SignInInfo")}
                                },
                                "required": ["sign_ins"],
                            },
                            "Every current sign-in; `current` marks the caller's own.",
                        )
                    },
                    401,
                ),
            )
        },
        "/api/sign-ins/{sign_in_id}": {
            "delete": _operation(
                "Sign a browser out at once: its cookie stops working and its open event "
                "streams end within about a second.",
                r(
                    {
                        "204": {
                            "description": "Signed out (the caller's own cookie is cleared "
                            "when it signed itself out)."
                        }
                    },
                    401,
                    403,
                    404,
                ),
                parameters=[_path_param("sign_in_id", "A sign-in id (`signin_...`).")],
            )
        },
        "/api/environments": {
            "get": _operation(
                "List environments (one per running daemon).",
                r(
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "environments": {
                                        "type": "array",
                                        "items": _ref("EnvironmentInfo"),
                                    }
                                },
                                "required": ["environments"],
                            },
                            "Every environment.",
                        )
                    },
                    401,
                ),
            )
        },
        "/api/environments/{environment_id}/sessions": {
            "post": _operation(
                "Start a session in an environment.",
                r(
                    {"201": _json(_ref("SessionInfo"), "The new, queued session.")},
                    400,
                    401,
                    404,
                    409,
                    413,
                ),
                parameters=[environment_id],
                body="CreateSession",
            )
        },
        "/api/sessions": {
            "get": _operation(
                "List sessions, newest first.",
                r(
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "sessions": {"type": "array", "items": _ref("SessionInfo")}
                                },
                                "required": ["sessions"],
                            },
                            "Every session.",
                        )
                    },
                    401,
                ),
            )
        },
        "/api/sessions/{session_id}": {
            "get": _operation(
                "One session.", r({"200": session_object}, 401, 404), parameters=[session_id]
            ),
            "patch": _operation(
                "Rename a session.",
                r({"200": session_object}, 400, 401, 404, 413),
                parameters=[session_id],
                body="Rename",
            ),
        },
        "/api/sessions/{session_id}/events": {
            "get": _operation(
                "A session's events in seq order; with `Accept: text/event-stream`, a live "
                "SSE stream (`id:` = seq, `event:` = kind, `data:` = the event) that resumes "
                "after `Last-Event-ID`.",
                r(
                    {
                        "200": {
                            "description": "Events after `after` (JSON) or a live stream (SSE).",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "events": {"type": "array", "items": _ref("Event")}
                                        },
                                        "required": ["events"],
                                    }
                                },
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    400,
                    401,
                    404,
                ),
                parameters=[
                    session_id,
                    {
                        "name": "after",
                        "in": "query",
                        "description": "Only events with a greater seq (default 0).",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PARAM},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "At most this many events (JSON only; default 1000).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "partials",
                        "in": "query",
                        "description": "SSE only: 1 to get the reply being written too, as "
                        "`assistant_partial` messages without `id:` (see docs/api.md).",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1},
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "SSE only: resume after this seq (wins over `after`).",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PARAM},
                    },
                ],
            )
        },
        "/api/sessions/{session_id}/messages": {
            "post": _operation(
                "Send a message; the same client-chosen `id` twice is one message.",
                r({"202": _json(queued, 'Queued: `{"id": ...}`.')}, 400, 401, 404, 409, 413),
                parameters=[session_id],
                body="PostMessage",
            )
        },
        "/api/sessions/{session_id}/permissions/{request_id}": {
            "post": _operation(
                "Answer a permission request.",
                r(
                    {"202": _json(queued, 'Queued: `{"request_id": ...}`.')},
                    400,
                    401,
                    404,
                    409,
                    413,
                ),
                parameters=[
                    session_id,
                    _path_param("request_id", "The `request_id` of a `permission_request` event."),
                ],
                body="PermissionDecision",
            )
        },
        "/api/sessions/{session_id}/interrupt": {
            "post": _operation(
                "Interrupt the current turn.",
                r({"202": _json(queued, 'Queued: `{"session_id": ...}`.')}, 401, 404, 409),
                parameters=[session_id],
            )
        },
        "/api/sessions/{session_id}/stop": {
            "post": _operation(
                "End the session.",
                r({"202": _json(queued, 'Queued: `{"session_id": ...}`.')}, 401, 404, 409),
                parameters=[session_id],
            )
        },
        "/api/environments/{environment_id}/settings": {
            "get": _operation(
                "The settings new sessions of the environment start with, as its daemon applies "
                "them (variables by name only).",
                r({"200": _json(_ref("SettingsView"), "The settings.")}, 401, 404, 409),
                parameters=[environment_id],
            ),
            "put": _operation(
                "Change settings (fields left out stay); waits up to 10 s for the daemon.",
                r(
                    {
                        "200": _json(_ref("SettingsView"), "Applied: the settings now."),
                        "202": _json(_ref("SettingsView"), "Queued: the settings before."),
                    },
                    400,
                    401,
                    404,
                    409,
                    413,
                ),
                parameters=[environment_id],
                body="SettingsUpdate",
            ),
        },
        "/api/sessions/{session_id}/resume": {
            "post": _operation(
                "Start an ended session again in the same directory (its agent resumes).",
                r({"202": _json(_ref("SessionInfo"), "The session, queued again.")}, 401, 404, 409),
                parameters=[session_id],
            )
        },
    }


def openapi_document(server_url: str) -> dict[str, Any]:
    # They use the helpers here.
    from .openapi_changes import CHANGES_COMPONENTS, changes_paths
    from .openapi_grants import GRANTS_COMPONENTS, grants_paths
    from .openapi_push import PUSH_COMPONENTS, push_paths

    error = _json(_ref("ErrorBody"), "An error.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rcd relay client API",
            "version": "1",
            "description": "Drive coding-agent sessions on your machines. See docs/api.md.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": _paths() | changes_paths() | push_paths() | grants_paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A device token from `rcd relay token create`.",
                },
                "cookie": {"type": "apiKey", "in": "cookie", "name": "rcd_session"},
            },
            "schemas": {
                cl.__name__: schema_of(cl)
                for cl in _COMPONENTS + CHANGES_COMPONENTS + PUSH_COMPONENTS + GRANTS_COMPONENTS
            },
            "responses": {
                f"Error{status}": error | {"description": meaning}
                for status, meaning in {
                    400: "Malformed body or parameter (`invalid_body`, `invalid_parameter`).",
                    401: "Missing or invalid credentials (`unauthenticated`).",
                    403: "A write signed by the `rcd_session` cookie without the header "
                    "`X-Requested-With: rcd` (`csrf`); a push endpoint that is no push "
                    "service's (`endpoint_refused`); a notification's answer token used for "
                    "another request (`wrong_scope`).",
                    404: "Unknown session, environment or sign-in (`not_found`), or permission "
                    "request "
                    "(`unknown_permission_request`), or grant (`unknown_grant`).",
                    409: "Conflicts with the current state: `at_capacity`, `environment_offline`, "
                    "`session_ended`, `not_resumable`, `permission_already_resolved`, `pinned`, "
                    "`settings_unsupported`, `conversation_unsupported`, `sandbox_unsupported`, "
                    "`changes_unsupported`, `no_answer`, `grants_unsupported`, `grant_refused`, "
                    "`agent_not_allowed`, `agents_unsupported`; "
                    "for changes: `conflicts`, "
                    "`checkout_dirty`, `uncommitted_changes`, `confirmation_required`, "
                    "`session_busy`, `session_running`, `nothing_to_commit`, `no_remote`...",
                    413: "Too large (`body_too_large`, `message_too_large`).",
                    429: "Too many failed attempts from this caller (`rate_limited`); see "
                    "`Retry-After`.",
                }.items()
            },
        },
    }
