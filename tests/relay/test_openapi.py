from __future__ import annotations

from typing import Any

import httpx
from starlette.routing import Route

from relay import Hub, RelayConfig, SqliteStorage, create_app
from relay.openapi import openapi_document

from .conftest import PUBLIC_URL

#: Routes that are not part of the client API.
NOT_CLIENT_API = {"/", "/s/{session_id}", "/assets/{path:path}", "/sw.js"}


def client_routes(storage: SqliteStorage, hub: Hub, config: RelayConfig) -> set[tuple[str, str]]:
    app = create_app(storage, hub, config)
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path.startswith("/daemon/") or route.path in NOT_CLIENT_API:
            continue
        assert route.methods is not None
        routes |= {(route.path, m.lower()) for m in route.methods if m != "HEAD"}
    return routes


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in document["paths"].items() for method in ops}


async def test_every_client_route_is_documented_and_nothing_else(
    storage: SqliteStorage, hub: Hub, config: RelayConfig
) -> None:
    routes = client_routes(storage, hub, config)
    assert ("/api/sessions/{session_id}", "patch") in routes  # the filter keeps the API
    assert len(routes) == 31
    assert documented_routes(openapi_document(PUBLIC_URL)) == routes


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_reference_resolves_and_schemas_follow_wire() -> None:
    document = openapi_document(PUBLIC_URL)
    assert document["openapi"].startswith("3.1")
    for ref in _refs(document):
        _, section, kind, name = ref.split("/")
        assert name in document[section][kind], ref
    schemas = document["components"]["schemas"]
    assert schemas["PostMessage"]["required"] == ["id", "text"]
    assert schemas["PostMessage"]["additionalProperties"] is False
    assert schemas["CreateSession"].get("required") is None
    assert schemas["CreateSession"]["properties"]["spawn"] == {
        "anyOf": [{"type": "string", "enum": ["same-dir", "worktree"]}, {"type": "null"}]
    }
    assert schemas["Event"]["properties"]["data"] == {"type": "object", "additionalProperties": {}}
    # Length limits of the wire types are in the schema too.
    assert schemas["Rename"]["properties"]["title"] == {
        "type": "string",
        "minLength": 1,
        "pattern": "\\S",
        "maxLength": 500,
    }
    assert schemas["CreateSession"]["properties"]["title"] == {
        "anyOf": [{"type": "string", "maxLength": 500}, {"type": "null"}]
    }
    assert schemas["PostMessage"]["properties"]["id"]["maxLength"] == 200
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert params == [seg[1:-1] for seg in path.split("/") if seg.startswith("{")], (
                path,
                method,
            )
            assert op["responses"], (path, method)


async def test_served_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.json()["servers"] == [{"url": PUBLIC_URL}]
    assert response.json() == openapi_document(PUBLIC_URL)
