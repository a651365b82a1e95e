"""The hidden commands the supervisor runs as services: backend, refiner, flows.

Each builds its runtime (read-only) from the environment, like any entry point."""

from __future__ import annotations

from backend.cli.app import app, runtime


@app.command("backend-run", hidden=True)
def backend_run() -> None:
    """Serve the backend API over HTTPS in the foreground (the supervisor runs it)."""
    import uvicorn

    from backend.api.app import create_app
    from backend.api.governance_state import GovernanceState, RateLimiter
    from backend.api.request_guard import RequestLimits
    from backend.governance.audit_anchor import AnchorFiles, AnchorSigner
    from backend.keys.study_keys import StudyKeys

    ctx = runtime(service=True)
    s = ctx.settings

    def governance() -> GovernanceState:
        from backend.identity.hub_client import HubTokenValidator
        from backend.stack.hub_server import SERVICE

        # People are who JupyterHub says they are: their Hub token, checked with the Hub.
        validator = HubTokenValidator(
            ctx.hub.api_url, ctx.hub.backend_token, ctx.layout.ca_cert, service_name=SERVICE
        )
        return GovernanceState.open(
            ctx.db,
            validator,
            StudyKeys(ctx.layout.keys / "studies", ctx.kms()),
            ctx.settings.region,
            RateLimiter(s.rate_limit_per_second, s.rate_limit_burst),
            # Signs the audit chain's head with a key the database never sees.
            AnchorSigner(AnchorFiles.in_home(ctx.layout.home), ctx.db.dbname),
        )

    api = create_app(
        governance=governance,
        limits=RequestLimits(s.max_request_bytes, s.max_query_bytes),
        db=ctx.db,
        keys=ctx.keystore(),
        region=s.region,
        max_batch_bytes=s.max_batch_bytes,
    )
    uvicorn.run(
        api,
        host="127.0.0.1",
        port=s.backend_port,
        log_level="warning",
        ssl_certfile=str(ctx.layout.server_cert),
        ssl_keyfile=str(ctx.layout.server_key),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command("flows-run", hidden=True)
def flows_run() -> None:
    """Serve the Prefect deployments (the supervisor runs it with the Prefect API settings)."""
    from typing import cast

    from prefect import serve
    from prefect.deployments.runner import RunnerDeployment

    from backend.refine import dropbox
    from flows.ingest import drop_folder_flow, ingest_file_flow

    ctx = runtime(service=True)
    dropbox.ensure(ctx.drop_dir)
    # to_deployment is sync-or-async by context; called from sync code it is the object.
    drop = cast(
        RunnerDeployment,
        drop_folder_flow.to_deployment(
            name="drop-folder",
            interval=ctx.settings.drop_interval_seconds,
            description=f"ingest files dropped into {ctx.drop_dir}/<format>/<member>/",
        ),
    )
    one = cast(
        RunnerDeployment,
        ingest_file_flow.to_deployment(name="ingest-file", description="land and refine one file"),
    )
    serve(drop, one, print_starting_message=False)


@app.command("refiner-run", hidden=True)
def refiner_run() -> None:
    """Run the refiner in the foreground (the supervisor starts it as a service)."""
    import signal
    import threading

    from backend.refine.runner import run_workers

    ctx = runtime(service=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_workers(
        ctx.db,
        ctx.keystore,
        stop,
        ctx.settings.refiner_workers,
        heartbeat=ctx.layout.run / "refiner.heartbeat",
        time_limit=ctx.settings.refine_time_limit_seconds,
        max_attempts=ctx.settings.refine_max_attempts,
    )
