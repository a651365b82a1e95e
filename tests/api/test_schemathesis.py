"""Property-based tests of the backend's OpenAPI schema (schemathesis): for any generated
input, no 5xx, and every response matches the documented status codes and schemas.

Driven through schemathesis' API rather than its pytest plugin, which does not load under
this pytest version."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from backend.stack.context import StackContext


def test_every_operation_conforms(ctx: StackContext) -> None:
    ca = str(ctx.layout.ca_cert)
    schema = schemathesis.openapi.from_url(f"{ctx.backend_url}/openapi.json", verify=ca)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /v1/ingest/batches",
        "GET /v1/members/{member}/timeline",
        "GET /v1/studies/{study}/dataset",
        "POST /v1/studies/{study}/cohort-stats",
        "GET /v1/members/{member}/consent",
        "POST /v1/members/self/consent",
        "GET /v1/quarantine",
        "GET /v1/quality",
        "GET /v1/audit",
        "POST /v1/policy/grants",
    }
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(verify=ca)

        run()
