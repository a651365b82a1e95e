"""The demo's governed part: a study over the synthetic cohort, a researcher account, and
the researcher's first question asked the way a notebook asks it (Hub login, token,
backend over HTTPS, disclosure control)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import pandas as pd
from rich.table import Table

from backend.governance import consent, studies
from backend.identity import hub_auth
from backend.identity.hub_client import login_token
from backend.stack import secrets_store
from backend.stack.context import StackContext
from workbench import connect

STUDY = "demo-hr"
RESEARCHER = "demo-researcher"
# The entry of the stack's secrets file that holds the demo account's password.
KEPT_AS = "hub_demo_researcher"


def prepare(ctx: StackContext, members: Sequence[uuid.UUID]) -> str:
    """The study, the cohort's consent to it (and to coaching), and the researcher's Hub
    account; returns the account's password (kept in the stack's secrets file)."""
    with ctx.db.connect("backend") as conn:
        studies.create(conn, STUDY, "Demo: heart rate of the synthetic cohort", "demo")
        # The demo notebooks pull pseudonymised rows (extracts, training sets).
        studies.set_access_level(conn, STUDY, "row-level")
        studies.add_researcher(conn, STUDY, RESEARCHER)
        for purpose in (consent.study_purpose(STUDY), "coaching"):
            # Only members never asked: a second demo appends nothing to the ledger, and
            # a member who withdrew stays withdrawn.
            asked = {
                row[0]
                for row in conn.execute(
                    "select distinct member_id from governance.consent_events where purpose = %s",
                    (purpose,),
                )
            }
            consent.grant_all(
                conn,
                [m for m in members if m not in asked],
                purpose,
                ["wearables", "labs"],
                consent_version="demo-v1",
                recorded_by="demo",
            )
    names = (*secrets_store.SECRET_NAMES, KEPT_AS)
    password = secrets_store.load_or_create(ctx.layout.secrets_file, names)[KEPT_AS]
    if hub_auth.lookup(ctx.hub.user_store, RESEARCHER) is None:
        hub_auth.add_user(ctx.hub.user_store, RESEARCHER, password, ["researcher"])
    return password


def first_question(
    ctx: StackContext, password: str, start: dt.datetime, end: dt.datetime
) -> pd.DataFrame:
    """Daily heart rate by sex, as the researcher sees it."""
    token = login_token(ctx.hub.url, ctx.layout.ca_cert, RESEARCHER, password, "demo")
    wb = connect(ctx.backend_url, token, str(ctx.layout.ca_cert))
    try:
        return wb.cohort_stats(
            STUDY,
            code="8867-4",
            start=start,
            end=end,
            period="day",
            by=["sex"],
            stats=["mean", "median"],
        )
    finally:
        wb.close()


def as_table(frame: pd.DataFrame) -> Table:
    table = Table(
        title=f"As {RESEARCHER} sees study {STUDY}: heart rate by day and sex "
        f"(cells under {frame.attrs.get('threshold', 10)} members suppressed)",
        title_justify="left",
    )
    for col in frame.columns:
        table.add_column(str(col), justify="left" if col in ("period", "sex") else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row))
    return table
