"""The hub's OpenAPI document: served over a real HTTP server, valid OpenAPI 3.0,
and describing exactly the routes the hub application registers (a route
added without documentation fails here)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from schemathesis.specs.openapi.definitions import OPENAPI_30

from passbridge.fleet.hub.app import Hub, HubConfig, create_hub_app
from passbridge.fleet.hub.openapi import document
from passbridge.service.openapi import documented_operations, routed_operations

OPEN = {("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/v1/openapi.json")}
REMOTE_UNLOCK = ("POST", "/v1/sites/{site}/doors/{door}/remote-unlock")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    """The hub's app on loopback; the document needs neither NATS nor PostgreSQL,
    so the hub is not started (nothing listens at those URLs)."""
    hub = Hub(HubConfig("nats://127.0.0.1:9", "postgresql://127.0.0.1:9/none"))
    test_client: TestClient[Any, Any] = TestClient(TestServer(create_hub_app(hub,
                                                                             manage=False)))
    await test_client.start_server()
    try:
        yield test_client
    finally:
        await test_client.close()


async def _served(client: TestClient[Any, Any]) -> dict[str, Any]:
    answer = await client.get("/v1/openapi.json")
    assert answer.status == 200 and answer.content_type == "application/json"
    served: dict[str, Any] = await answer.json()
    return served


async def test_the_document_describes_exactly_the_hub_routes(
        client: TestClient[Any, Any]) -> None:
    served = await _served(client)
    assert served == json.loads(json.dumps(document()))
    assert documented_operations(served) == routed_operations(client.server.app)
    assert REMOTE_UNLOCK in documented_operations(served)


async def test_the_document_is_valid_openapi_3(client: TestClient[Any, Any]) -> None:
    served = await _served(client)
    jsonschema.Draft4Validator(OPENAPI_30).validate(served)
    # Every $ref points at a component the document has.
    refs = set(_refs(served))
    assert refs and refs <= {f"#/components/schemas/{name}"
                             for name in served["components"]["schemas"]}


async def test_operator_routes_name_the_operator_bearer_and_error_body(
        client: TestClient[Any, Any]) -> None:
    served = await _served(client)
    error = {"$ref": "#/components/schemas/Error"}
    for method, path in documented_operations(served) - OPEN - {REMOTE_UNLOCK}:
        op = served["paths"][path][method.lower()]
        assert op["security"] == [{"operatorJwt": []}], (method, path)
        for status in ("401", "403"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == error
    unlock = served["paths"]["/v1/sites/{site}/doors/{door}/remote-unlock"]
    assert unlock["post"]["security"] == [{"backendJwt": []}]
    assert {p["name"] for p in unlock["parameters"]} == {"site", "door"}
    assert {"200", "401", "404", "503", "504"} <= set(unlock["post"]["responses"])
    assert unlock["post"]["responses"]["504"]["content"]["application/json"]["schema"] == error
    audit = served["paths"]["/v1/audit"]["get"]
    assert {p["name"] for p in audit["parameters"]} == {
        "site", "door", "user", "result", "kind", "after", "limit"}
    error_shape = served["components"]["schemas"]["Error"]["properties"]["error"]
    assert error_shape["required"] == ["code", "message"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
