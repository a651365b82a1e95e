"""`rejuve`: run and inspect the local platform.

The entry point is the only place that reads the environment (via Settings, when a
command asks for its runtime). This module only assembles the commands: the typer app
lives in `backend.cli.app`, commands in `*_cmds.py`, and none of them imports this one."""

from __future__ import annotations

import sys

from backend.cli import (  # registered on the app as they are imported
    ingest_cmds,  # noqa: F401
    service_cmds,  # noqa: F401
    stack_cmds,  # noqa: F401
)
from backend.cli.alert_cmds import alerts_app
from backend.cli.analytics_cmds import retention_app, rollups_app
from backend.cli.app import app, context, runtime, service_mode, stack, verbose
from backend.cli.assignment_cmds import assignments_app
from backend.cli.audit_cmds import audit_app
from backend.cli.batch_cmds import batches_app
from backend.cli.data_cmds import quarantine_app
from backend.cli.feature_cmds import features_app
from backend.cli.member_cmds import members_app
from backend.cli.policy_cmds import policy_app
from backend.cli.sources_cmds import sources_app
from backend.cli.study_cmds import studies_app
from backend.cli.users_cmds import users_app

__all__ = ["app", "context", "main", "runtime", "stack"]

app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(sources_app, name="sources")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(batches_app, name="batches")
app.add_typer(policy_app, name="policy")
app.add_typer(members_app, name="members")
app.add_typer(assignments_app, name="assignments")
app.add_typer(studies_app, name="studies")
app.add_typer(rollups_app, name="rollups")
app.add_typer(retention_app, name="retention")
app.add_typer(features_app, name="features")
app.add_typer(alerts_app, name="alerts")


def main() -> None:
    # Standalone mode: click shows usage errors (unknown command or option, bad value) as
    # usage errors with status 2; our own errors come out here, as one line each.
    try:
        app(prog_name="rejuve")
    except Exception as e:
        from backend.cli.errors import report

        sys.exit(report(e, verbose(), service=service_mode()))


if __name__ == "__main__":
    main()
