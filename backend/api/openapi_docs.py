"""The API's documentation as the platform serves it: Swagger UI and ReDoc from the
`fastapi_offline` package's files (a machine without internet, or a hospital network,
cannot reach a CDN), and an OpenAPI document whose request schemas are complete (nested
models hoisted into `components`) and whose every operation carries a real example."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs-assets"
STATIC_DIR = Path(fastapi_offline.__file__).parent / "static"

DESCRIPTION = """Governed access to the Rejuve health-data platform.

People authenticate with their **JupyterHub API token** (scheme `HubToken`: click
*Authorize* and paste the token; it is sent as `Authorization: Bearer <token>`, and
`Authorization: token <token>` works too). Devices ingest with a source API key
(scheme `HTTPBearer`, `rk_<prefix>_<secret>`). Every request a person makes is audited;
the `X-Request-ID` response header names its audit record."""

_MEMBER = "5f0c2b8e-3d1a-4c47-9a8e-2b6f1d9e7c31"
_QUARANTINE = "8d3e6f0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
_RANGE = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"}

# One real example per operation: path and query parameters, the request body, and (for
# operations that take neither) the answer.
EXAMPLES: dict[str, dict[str, Any]] = {
    "GET /v1/members/{member}/timeline": {
        "params": {"member": "self", **_RANGE, "codes": ["8867-4"], "bucket": "hour"},
    },
    "GET /v1/studies/{study}/dataset": {
        "params": {"study": "demo-sleep", **_RANGE, "shape": "long", "format": "json"},
    },
    "POST /v1/studies/{study}/cohort-stats": {
        "params": {"study": "demo-sleep"},
        "body": {
            "code": "8867-4",
            **_RANGE,
            "period": "day",
            "criteria": [{"code": "8867-4", "op": ">=", "value": 50}],
            "sex": ["female", "male"],
            "age_min": 30,
            "age_max": 70,
            "by": ["sex"],
            "stats": ["mean", "median"],
        },
    },
    "GET /v1/members/{member}/consent": {"params": {"member": "self"}},
    "POST /v1/members/self/consent": {
        "body": {
            "purpose": "study:demo-sleep",
            "category": "vitals",
            "granted": True,
            "consent_version": "v1",
        },
    },
    "GET /v1/quarantine": {"params": {"status": "open", "reason": "unit_unknown", "limit": 50}},
    "GET /v1/quarantine/{quarantine_id}": {"params": {"quarantine_id": _QUARANTINE}},
    "POST /v1/quarantine/{quarantine_id}/reject": {
        "params": {"quarantine_id": _QUARANTINE},
        "body": {"note": "duplicate of a corrected record"},
    },
    "GET /v1/quality": {"params": {"limit": 20, "format": "device-batch"}},
    "GET /v1/audit": {
        "params": {"action": "dataset.extract", "outcome": "denied", "limit": 100},
    },
    "GET /v1/audit/verify": {"answer": {"ok": True, "checked": 1234, "problems": []}},
    "GET /v1/policy": {
        "answer": [
            {
                "subject": "role:coach",
                "region": "*",
                "resource": "members/:member/timeline",
                "action": "read",
            },
        ],
    },
    "POST /v1/policy/grants": {
        "body": {"subject": "role:steward", "region": "*", "resource": "quality", "action": "read"},
    },
    "POST /v1/policy/grants/revoke": {
        "body": {"subject": "role:steward", "region": "*", "resource": "quality", "action": "read"},
    },
    "GET /v1/assignments": {"params": {"coach": "carol", "include_revoked": False}},
    "POST /v1/assignments": {"body": {"coach": "carol", "member": _MEMBER}},
    "POST /v1/assignments/revoke": {"body": {"coach": "carol", "member": _MEMBER}},
    "GET /v1/studies": {
        "answer": [
            {
                "study_id": "demo-sleep",
                "title": "Sleep and resting heart rate",
                "created_by": "admin",
                "created_at": "2026-11-01T09:00:00Z",
                "closed_at": None,
                "researchers": ["rita"],
            }
        ],
    },
    "POST /v1/studies": {
        "body": {"study_id": "sleep-2027", "title": "Sleep and resting heart rate, 2027"},
    },
    "POST /v1/studies/{study}/researchers": {
        "params": {"study": "sleep-2027"},
        "body": {"researcher": "rita"},
    },
    "POST /v1/studies/{study}/researchers/revoke": {
        "params": {"study": "sleep-2027"},
        "body": {"researcher": "rita"},
    },
    "POST /v1/studies/{study}/close": {"params": {"study": "sleep-2027"}},
    "GET /v1/studies/{study}": {"params": {"study": "sleep-2027"}},
    "PUT /v1/studies/{study}/access-level": {
        "params": {"study": "sleep-2027"},
        "body": {"level": "row-level"},
    },
    "GET /v1/feature-views": {
        "answer": [
            {
                "name": "cardio",
                "features": ["resting_hr", "resting_hr_7d", "resting_hr_28d", "hrv_ms"],
                "services": ["coaching_overview", "research_model"],
                "description": "resting heart rate and HRV with their baselines",
            }
        ]
    },
    "GET /v1/members/{member}/features": {
        "params": {"member": "self", "service": "coaching_overview"},
    },
    "GET /v1/coach/triage": {
        "answer": {
            "as_of": "2026-11-27T08:00:00+00:00",
            "members": [
                {
                    "member": _MEMBER,
                    "last_sync": "2026-11-27T06:41:00+00:00",
                    "wear_coverage_7d": 0.83,
                    "consent": {"coaching": "granted", "withheld_categories": ["labs"]},
                    "open_alerts": 1,
                    "score": 3.0,
                    "flags": [
                        {
                            "rule": "rhr-up",
                            "version": 1,
                            "kind": "personal",
                            "metric": "resting_hr",
                            "value": 72.0,
                            "threshold": "3-day median > baseline median +"
                            " max(3 x 1.4826 x MAD, 5 /min)",
                            "baseline": {"median": 60.5, "mad": 1.0, "days": 27},
                            "coverage_days": 30,
                            "explanation": "Resting heart rate well above this member's own"
                            " 28-day baseline ...",
                        }
                    ],
                }
            ],
        }
    },
    "GET /v1/members/{member}/alerts": {"params": {"member": _MEMBER, "status": "open"}},
    "POST /v1/alerts/{alert}/acknowledge": {
        "params": {"alert": _QUARANTINE},
        "body": {"note": "called the member, a cold"},
    },
    "POST /v1/alerts/{alert}/dismiss": {"params": {"alert": _QUARANTINE}, "body": {"note": None}},
    "GET /v1/members/{member}/labs": {"params": {"member": _MEMBER}},
    "GET /v1/members/{member}/daily": {"params": {"member": _MEMBER, "days": 30}},
    "POST /v1/studies/{study}/training-set": {
        "params": {"study": "demo-sleep"},
        "body": {
            "service": "research_model",
            "rows": [
                {"pseudonym": "p-k3v9qz2m4h7x1c5b8n6d", "at": "2026-11-02T09:00:00+01:00"},
                {"pseudonym": "p-a2f8w6q1z9y3e7r5t4u0", "at": "2026-11-05T18:30:00-05:00"},
            ],
        },
    },
    "POST /v1/ingest/batches": {
        "body": {
            "batch_id": "watch-7f3a-2026-11-27T10:00",
            "member_id": _MEMBER,
            "device": "watch-7f3a",
            "samples": [
                {
                    "code": "8867-4",
                    "value": 62,
                    "unit": "/min",
                    "start": "2026-11-27T09:58:00Z",
                },
                {
                    "code": "8867-4",
                    "value": 64,
                    "unit": "/min",
                    "start": "2026-11-27T09:59:00Z",
                },
            ],
        },
    },
}

_METHODS = ("get", "put", "post", "delete", "patch")

# The pages may load images, fonts and data from the platform only: ReDoc's sidebar links
# its logo from a CDN, which a browser then does not even try.
_OFFLINE = {
    "Content-Security-Policy": "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
}


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(_OFFLINE)
    return page


def _hoist_defs(node: Any, schemas: dict[str, Any]) -> Any:
    """Move every `$defs` (pydantic's nested models, left inline by a hand-written request
    schema) into `components.schemas`, where its `#/components/schemas/X` refs point."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if isinstance(defs, dict):
            for name, schema in defs.items():
                schemas.setdefault(name, _hoist_defs(schema, schemas))
        return {k: _hoist_defs(v, schemas) for k, v in node.items()}
    if isinstance(node, list):
        return [_hoist_defs(v, schemas) for v in node]
    return node


def _add_examples(operation: dict[str, Any], example: Mapping[str, Any]) -> None:
    params = example.get("params", {})
    for parameter in operation.get("parameters", []):
        if parameter.get("name") in params:
            parameter["example"] = params[parameter["name"]]
    if "body" in example:
        for media in operation.get("requestBody", {}).get("content", {}).values():
            media["example"] = example["body"]
    if "answer" in example:
        for code, response in operation.get("responses", {}).items():
            if str(code).startswith("2"):
                for media in response.get("content", {}).values():
                    media["example"] = example["answer"]


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    schema["paths"] = _hoist_defs(schema.get("paths", {}), schemas)
    for path, item in schema["paths"].items():
        for method in _METHODS:
            if method in item:
                example = EXAMPLES.get(f"{method.upper()} {path}")
                if example is not None:
                    _add_examples(item[method], example)
    return schema


def install(app: FastAPI) -> None:
    """Serve /docs and /redoc from the package's files, and the completed schema."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{title} - Swagger UI",
                swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                swagger_ui_parameters={"persistAuthorization": True},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{title} - ReDoc",
                redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                # ReDoc would fetch Google fonts otherwise.
                with_google_fonts=False,
            )
        )

    def cached_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_schema(app)
        return app.openapi_schema

    app.openapi = cached_openapi  # type: ignore[method-assign]
