"""Hostile input on every write endpoint: never a 5xx, always the error shape, no change.

Each example builds a fresh relay (SQLite in its own directory) with a device token, an
online environment and a session that has started and asked for a permission, then sends
one request with an arbitrary body, content type, credential and path parameters. For
every example: the status is below 500; a 4xx carries ``{"error": {"code", "message"}}``;
and a 4xx leaves the session's log, the environment's queued directives and the row count
of every table exactly as they were. A 2xx is fine (the body may happen to be valid).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import Hub, RelayConfig, SqliteStorage, create_app
from relay.sqlite import database_path
from testkit.asgi import ASGITransport
from wire import encode

from .conftest import (
    PUBLIC_URL,
    create_session,
    event,
    make_device_token,
    queued_directives,
    register,
    register_body,
    started,
    uplink,
)

EXAMPLES = 60


@attrs.frozen
class World:
    client: httpx.AsyncClient
    storage: SqliteStorage
    data_dir: Path
    user: dict[str, str]
    #: The daemon's credentials by kind: "credential", "link" and "session".
    daemon: dict[str, dict[str, str]]
    environment_id: str
    session_id: str

    def ids(self) -> dict[str, str]:
        return {
            "environment_id": self.environment_id,
            "session_id": self.session_id,
            "request_id": "req-1",
        }


@asynccontextmanager
async def world(data_dir: Path) -> AsyncIterator[World]:
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        config = RelayConfig(data_dir=data_dir, port=0, public_url=PUBLIC_URL)
        app = create_app(storage, Hub(), config)
        transport = ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            user = await make_device_token(storage)
            daemon = await register(client, storage)
            await storage.open_downlink(daemon.environment_id, "link_test")
            session = await create_session(client, user, daemon.environment_id, prompt="hi")
            permission = event(
                2, "permission_request", request_id="req-1", tool="Bash", input={}, description="ls"
            )
            response = await uplink(client, daemon, session["id"], started(), permission)
            assert response.status_code == 200, response.text
            yield World(
                client,
                storage,
                data_dir,
                user,
                {
                    "credential": daemon.credential_headers,
                    "link": daemon.headers,
                    "session": await daemon.session_headers(client, session["id"]),
                },
                daemon.environment_id,
                session["id"],
            )


def table_counts(data_dir: Path) -> dict[str, int]:
    with closing(sqlite3.connect(database_path(data_dir))) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


async def snapshot(w: World) -> tuple[Any, ...]:
    events = await w.storage.read_events(w.session_id, 0, 10000)
    directives = queued_directives(w.data_dir, w.environment_id)
    return (
        [encode(e) for e in events],
        [encode(d) for d in directives],
        table_counts(w.data_dir),
    )


# -- strategies ------------------------------------------------------------------------------

# Every code point, lone surrogates included (they reach the relay as "\ud800" escapes).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
tricky_text = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "x\ud83d", "\ud83d\ude00", "é", "\u202e"]
)
strings = any_text | tricky_text
numbers = (
    st.integers()
    | st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**30, -1, 0])
    | st.floats()
    | st.sampled_from([-0.0, 1e308, 5e-324])
)
scalars = st.none() | st.booleans() | numbers | strings
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(strings, children, max_size=4)
    ),
    max_leaves=12,
)


def encode_json(value: Any, ascii_only: bool) -> bytes:
    # ensure_ascii=True spells lone surrogates as escapes; False leaves them raw, which
    # surrogatepass turns into (invalid) UTF-8 bytes.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def near_valid(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    """A valid body with one field replaced, removed or added."""
    body = dict(template)
    action = draw(st.sampled_from(["replace", "remove", "add", "as-is"]))
    if action == "replace" and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(json_values)
    elif action == "remove" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif action == "add":
        body[draw(strings)] = draw(json_values)
    return body


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


@st.composite
def bodies(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    kind = draw(st.sampled_from(["near-valid", "json", "bytes", "truncated", "special"]))
    if kind in ("near-valid", "json"):
        value = draw(near_valid(template) if kind == "near-valid" else json_values)
        return encode_json(value, draw(st.booleans()))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "truncated":
        raw = encode_json(draw(near_valid(template)), ascii_only=False)
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    return draw(
        st.sampled_from(
            [
                b"",
                b"null",
                b"NaN",
                b'{"a": Infinity}',
                b"1e400",
                b"9" * 5000,
                deep(100_000),
                b"\xef\xbb\xbf{}",
                b"{}" * 3,
                b'{"a": 1, "a": 2}',
                b"\xff\xfe{\x00}\x00",
            ]
        )
    )


content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
    ]
)

hostile_ids = st.one_of(
    strings,
    st.sampled_from(
        [".", "..", "%", "%00", "%2F", "a/b", "?x=1", "#", "x" * 5000, "ses_" + "0" * 20]
    ),
)


@st.composite
def path_param(draw: st.DrawFn) -> str | None:
    """None for the real id (so bodies reach deep code), else a hostile one, percent-encoded."""
    if draw(st.booleans()):
        return None
    raw = draw(hostile_ids).encode("utf-8", "surrogatepass")
    return quote(raw, safe=draw(st.sampled_from(["", "/", "%"])))


@attrs.frozen
class Endpoint:
    method: str
    path: str
    auth: str  # "user", "credential", "link", "session" or "none"
    template: Callable[[], dict[str, Any]] = dict


ENDPOINTS = {
    "create_session": Endpoint(
        "POST",
        "/api/environments/{environment_id}/sessions",
        "user",
        lambda: {"prompt": "hello", "title": "t", "spawn": "same-dir"},
    ),
    "rename": Endpoint("PATCH", "/api/sessions/{session_id}", "user", lambda: {"title": "new"}),
    "message": Endpoint(
        "POST", "/api/sessions/{session_id}/messages", "user", lambda: {"id": "in_1", "text": "hi"}
    ),
    "permission": Endpoint(
        "POST",
        "/api/sessions/{session_id}/permissions/{request_id}",
        "user",
        lambda: {"decision": "allow", "message": None},
    ),
    "interrupt": Endpoint("POST", "/api/sessions/{session_id}/interrupt", "user"),
    "stop": Endpoint("POST", "/api/sessions/{session_id}/stop", "user"),
    "resume": Endpoint("POST", "/api/sessions/{session_id}/resume", "user"),
    "logout": Endpoint("POST", "/logout", "none"),
    "pair": Endpoint(
        "POST", "/daemon/v1/pair", "none", lambda: {"code": "ABCD-EFGH", "machine": "m"}
    ),
    "register": Endpoint("POST", "/daemon/v1/register", "credential", register_body),
    "tokens": Endpoint(
        "POST",
        "/daemon/v1/environments/{environment_id}/tokens",
        "credential",
        lambda: {"session_id": None},
    ),
    "ack": Endpoint(
        "POST", "/daemon/v1/environments/{environment_id}/ack", "link", lambda: {"through": 1}
    ),
    "goodbye": Endpoint("POST", "/daemon/v1/environments/{environment_id}/goodbye", "link"),
    "uplink": Endpoint(
        "POST",
        "/daemon/v1/environments/{environment_id}/uplink",
        "link",
        lambda: {
            "sessions": [
                {
                    "session_id": "ses_x",
                    "token": "rcd_at_x.y",
                    "events": [event(3, "assistant_text", text="hi")],
                }
            ]
        },
    ),
    "events": Endpoint(
        "POST",
        "/daemon/v1/sessions/{session_id}/events",
        "session",
        lambda: {"events": [event(3, "assistant_text", text="hi")]},
    ),
}


@st.composite
def requests(draw: st.DrawFn, endpoint: Endpoint) -> dict[str, Any]:
    """Everything about one request but the ids, which only the world knows."""
    return {
        "body": draw(bodies(endpoint.template())),
        "content_type": draw(content_types),
        "auth": draw(
            st.sampled_from(
                [endpoint.auth] * 4 + ["user", "credential", "link", "session", "none", "bogus"]
            )
        ),
        "cookie": draw(st.none() | strings.filter(lambda s: s.isascii() and s.isprintable())),
        "params": {
            name: draw(path_param()) for name in ("environment_id", "session_id", "request_id")
        },
    }


def assert_error_shape(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and isinstance(error["message"], str), body


async def send(w: World, endpoint: Endpoint, request: dict[str, Any]) -> httpx.Response:
    ids = w.ids()
    path = endpoint.path.format(
        **{name: quote(ids[name]) if (p := request["params"][name]) is None else p for name in ids}
    )
    headers = {"user": w.user, "none": {}, **w.daemon}.get(
        request["auth"], {"authorization": "Bearer rcd_bogus"}
    )
    headers = dict(headers)
    if request["content_type"] is not None:
        headers["content-type"] = request["content_type"]
    if request["cookie"] is not None:
        headers["cookie"] = f"rcd_session={request['cookie']}"
    return await w.client.request(endpoint.method, path, content=request["body"], headers=headers)


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_hostile_request_is_refused_cleanly(
    name: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    endpoint = ENDPOINTS[name]
    request = data.draw(requests(endpoint), label="request")
    async with world(tmp_path_factory.mktemp("hostile")) as w:
        before = await snapshot(w)
        response = await send(w, endpoint, request)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert_error_shape(response)
            assert await snapshot(w) == before, response.text
