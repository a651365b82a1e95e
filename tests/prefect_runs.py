"""Run a served Prefect deployment through the API and wait for its end state."""

from __future__ import annotations

import ssl
import time

import httpx

from backend.runtime import Runtime

END_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def run_deployment(
    ctx: Runtime, name: str, parameters: dict[str, object], timeout: float = 120
) -> tuple[dict[str, object], str]:
    """(the deployment as Prefect shows it, the run's final state type)."""
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    api = ctx.prefect.api_url
    with httpx.Client(verify=tls, timeout=30, auth=ctx.prefect.basic_auth) as client:
        dep = client.get(f"{api}/deployments/name/{name}/{name}")
        assert dep.status_code == 200, "the flows service must serve the deployment"
        run = client.post(
            f"{api}/deployments/{dep.json()['id']}/create_flow_run",
            json={"parameters": parameters},
        )
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = client.get(f"{api}/flow_runs/{run_id}").json()["state"]["type"]
            if state in END_STATES:
                break
            time.sleep(0.5)
    return dep.json(), state
