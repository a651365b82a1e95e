"""/docs and /redoc work on a machine without internet: Debian's Chromium, every request
beyond 127.0.0.1 blocked, shows the operations; the OpenAPI document is complete (nested
request schemas present, the Hub token a security scheme of every governed operation, an
example for every operation)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from backend.stack.context import StackContext
from tests.browser import launch


@pytest.fixture(scope="module")
def schema(ctx: StackContext) -> dict[str, Any]:
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    with httpx.Client(base_url=ctx.backend_url, verify=tls) as client:
        doc: dict[str, Any] = client.get("/openapi.json").json()
    return doc


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, op


def test_every_ref_resolves_and_samples_are_objects(schema: dict[str, Any]) -> None:
    known = set(schema["components"]["schemas"])
    text = str(schema)
    refs = {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}
    assert refs <= known, refs - known
    body = schema["paths"]["/v1/ingest/batches"]["post"]["requestBody"]["content"]
    samples = body["application/json"]["schema"]["properties"]["samples"]["items"]
    assert samples == {"$ref": "#/components/schemas/DeviceSample"}
    assert schema["components"]["schemas"]["DeviceSample"]["type"] == "object"


def test_governed_operations_declare_the_hub_token(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["HubToken"]["scheme"] == "bearer"
    for method, path, op in _operations(schema):
        expected = "HTTPBearer" if path.startswith("/v1/ingest/") else "HubToken"
        assert op.get("security") == [{expected: []}], (method, path)


def test_every_operation_has_an_example(schema: dict[str, Any]) -> None:
    def has_example(op: dict[str, Any]) -> bool:
        params = any("example" in p for p in op.get("parameters", []))
        body = any("example" in m for m in op.get("requestBody", {}).get("content", {}).values())
        answer = any(
            "example" in m
            for code, r in op.get("responses", {}).items()
            if str(code).startswith("2")
            for m in r.get("content", {}).values()
        )
        return params or body or answer

    missing = [f"{m} {p}" for m, p, op in _operations(schema) if not has_example(op)]
    assert missing == []
    assert len(list(_operations(schema))) >= 20


@pytest.mark.parametrize(
    ("page_path", "selector"),
    [("/docs", ".opblock"), ("/redoc", "[data-section-id^='operation/']")],
)
def test_the_docs_show_the_operations_with_no_network(
    ctx: StackContext, page_path: str, selector: str
) -> None:
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []

    def only_local(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = launch(p)
        try:
            # The stack's own CA is not in Chromium's store: accept its certificate here.
            context = browser.new_context(ignore_https_errors=True)
            context.route("**/*", only_local)
            page = context.new_page()
            page.goto(f"{ctx.backend_url}{page_path}")
            page.wait_for_selector(selector, timeout=30_000)
            count = page.locator(selector).count()
            text = page.content()
        finally:
            browser.close()
    assert blocked == []
    assert count >= 20
    assert "/v1/studies/{study}/cohort-stats" in text
