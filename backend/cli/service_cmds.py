"""The hidden commands the supervisor runs as services: backend, refiner, rollups, flows.

Each builds its runtime (read-only) from the environment, like any entry point."""

from __future__ import annotations

import threading

from backend.cli.app import app, runtime


def backend_workers(configured: int) -> int:
    """REJUVE_BACKEND_WORKERS, or one worker process per core when it is 0."""
    import os

    return configured if configured > 0 else (os.cpu_count() or 1)


def _die_with_parent() -> None:
    """In a worker process: end when uvicorn's parent does. A parent killed with -9 would
    otherwise leave its workers serving the old code on the port, where the restarted
    backend cannot bind."""
    import ctypes
    import multiprocessing
    import os
    import signal
    import sys

    parent = multiprocessing.parent_process()
    if parent is None or sys.platform != "linux":
        return  # one worker: uvicorn serves in the supervised process itself
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent.pid:  # the parent died before the line above
        raise SystemExit(1)


def backend_app() -> object:
    """The backend app of one worker process (uvicorn's factory: each worker builds its
    own pools, policy listener, audit writer and token cache; rate limits are in Redis)."""
    _die_with_parent()
    from backend.api.app import create_app
    from backend.api.governance_state import GovernanceState, Rate, SharedRateLimiter
    from backend.api.request_guard import RequestLimits
    from backend.governance.audit_anchor import AnchorFiles, AnchorSigner
    from backend.keys.study_keys import StudyKeys

    ctx = runtime(service=True)
    s = ctx.settings
    workers = backend_workers(s.backend_workers)

    def governance() -> GovernanceState:
        from backend.identity.hub_auth import StoreDirectory
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
            SharedRateLimiter.open(
                ctx.redis.url,
                ctx.redis.ca_file,
                Rate(s.rate_limit_per_second, s.rate_limit_burst),
                Rate(s.rate_limit_anonymous_per_second, s.rate_limit_anonymous_burst),
            ),
            # Signs the audit chain's head with a key the database never sees.
            AnchorSigner(AnchorFiles.in_home(ctx.layout.home), ctx.db.dbname),
            # The database's connection budget is shared by the workers.
            query_connections=max(4, 32 // workers),
            accounts=StoreDirectory(ctx.hub.user_store),
        )

    def features() -> object:
        from backend.features.environment import open_store

        return open_store(ctx)

    return create_app(
        governance=governance,
        features=features,
        limits=RequestLimits(s.max_request_bytes, s.max_query_bytes),
        db=ctx.db,
        keys=ctx.keystore(),
        region=s.region,
        max_batch_bytes=s.max_batch_bytes,
    )


@app.command("backend-run", hidden=True)
def backend_run() -> None:
    """Serve the backend API over HTTPS in the foreground (the supervisor runs it), as
    REJUVE_BACKEND_WORKERS processes (default: one per core)."""
    import uvicorn

    ctx = runtime(service=True)
    s = ctx.settings
    uvicorn.run(
        "backend.cli.service_cmds:backend_app",
        factory=True,
        workers=backend_workers(s.backend_workers),
        host="127.0.0.1",
        port=s.backend_port,
        log_level="warning",
        ssl_certfile=str(ctx.layout.server_cert),
        ssl_keyfile=str(ctx.layout.server_key),
        access_log=False,
        timeout_graceful_shutdown=10,
        # A new worker imports the whole platform before it answers uvicorn's health ping;
        # on a loaded machine that takes longer than uvicorn's 5 s, and it would kill and
        # respawn workers forever.
        timeout_worker_healthcheck=30,
    )


@app.command("flows-run", hidden=True)
def flows_run() -> None:
    """Serve the Prefect deployments (the supervisor runs it with the Prefect API settings)."""
    from typing import Any, cast

    from prefect import serve
    from prefect.deployments.runner import RunnerDeployment

    from backend.refine import dropbox
    from flows.alerts import detect_alerts_flow
    from flows.features import materialise_features_flow
    from flows.ingest import drop_folder_flow, ingest_file_flow

    ctx = runtime(service=True)
    dropbox.ensure(ctx.drop_dir)
    s = ctx.settings

    def deployment(flow: Any, name: str, description: str, **schedule: Any) -> RunnerDeployment:
        # to_deployment is sync-or-async by context; called from sync code it is the object.
        return cast(
            RunnerDeployment,
            flow.to_deployment(name=name, description=description, **schedule),
        )

    drop = deployment(
        drop_folder_flow,
        "drop-folder",
        f"ingest files dropped into {ctx.drop_dir}/<format>/<member>/",
        interval=s.drop_interval_seconds,
    )
    one = deployment(ingest_file_flow, "ingest-file", "land and refine one file")
    features = deployment(
        materialise_features_flow,
        "materialise-features",
        "queued member-days (analytics.feature_dirty) -> Feast online store",
        interval=s.features_interval_seconds,
    )
    alerts = deployment(
        detect_alerts_flow,
        "detect-alerts",
        "coaching rules over analytics.member_daily -> analytics.alerts",
        interval=s.alerts_interval_seconds,
    )
    # A few flow runs at a time: on a slow machine the 30 s drop-folder schedule would otherwise
    # pile up runs (each a process) faster than they finish.
    serve(drop, one, features, alerts, print_starting_message=False, limit=4)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: how the supervisor asks a service to stop."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command("rollups-run", hidden=True)
def rollups_run() -> None:
    """Keep the analytics zone's rollups up to date (the supervisor starts it as a service)."""
    from backend.analytics.worker import run

    ctx = runtime(service=True)
    run(ctx.db, _stop_on_signals(), heartbeat=ctx.layout.run / "rollups.heartbeat")


@app.command("refiner-run", hidden=True)
def refiner_run() -> None:
    """Run the refiner in the foreground (the supervisor starts it as a service)."""
    from backend.refine.runner import run_workers

    ctx = runtime(service=True)
    stop = _stop_on_signals()
    run_workers(
        ctx.db,
        ctx.keystore,
        stop,
        ctx.settings.refiner_workers,
        heartbeat=ctx.layout.run / "refiner.heartbeat",
        time_limit=ctx.settings.refine_time_limit_seconds,
        seconds_per_mib=ctx.settings.refine_seconds_per_mib,
        max_attempts=ctx.settings.refine_max_attempts,
    )


@app.command("coach-run", hidden=True)
def coach_run(config_file: str) -> None:
    """Serve the coach app (the supervisor runs it). It reads only its own configuration
    file, never the stack's secrets: it has no database to connect to."""
    from pathlib import Path

    from backend.coach_app.config import CoachConfig
    from backend.coach_app.server import serve

    serve(CoachConfig.load(Path(config_file)))
