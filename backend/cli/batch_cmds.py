"""`rejuve batches retry`: dead-lettered batches back in the refiner's queue (audited, as
`operator:<login>`, like the other changes an operator makes from the CLI)."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console

batches_app = typer.Typer(no_args_is_help=True, help="Landed batches and their refinement.")


@batches_app.command("retry")
def batches_retry(
    batch_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="dead-lettered batch ids, or unique prefixes of them", show_default=False
        ),
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead-lettered batch")] = False,
) -> None:
    """Put dead-lettered batches back in the refiner's queue, their failed attempts counted
    afresh. Fix the cause first: a batch that fails again is dead-lettered again after
    REJUVE_REFINE_MAX_ATTEMPTS tries. `rejuve reconcile --batch ID` shows the outcome."""
    from backend.cli.operator import operator_audit
    from backend.exceptions import UserError
    from backend.refine import dead_letter
    from backend.refine.reconcile import resolve_batch

    if bool(batch_ids) == all_dead:
        raise UserError("give the batch ids to put back, or --all-dead (not both)")
    ctx = runtime()
    with (
        operator_audit(
            ctx, "batches.retry", "batches", {"batches": batch_ids or [], "all_dead": all_dead}
        ) as params,
        ctx.db.connect("owner") as conn,
    ):
        ids = None if all_dead else [resolve_batch(conn, b) for b in batch_ids or []]
        put_back = dead_letter.retry(conn, ids)
        # Ids and counts only: the reasons stay in the ledger, the audit log outlives erasure.
        # The audit keeps the first 50 ids of a list; the count says how many there were.
        params["put_back"] = len(put_back)
        params["batches"] = [str(p.batch_id) for p in put_back]
        params["attempts_before"] = [p.attempts for p in put_back]
    if not put_back:
        console.print("no dead-lettered batch: nothing to put back")
        return
    for p in put_back:
        console.print(
            f"{p.batch_id}  after {p.attempts} attempt(s): {p.error or '-'}", highlight=False
        )
    console.print(
        f"put back in the refiner's queue: {len(put_back)} batch(es), attempts counted afresh"
        " (`rejuve reconcile --batch ID` shows what became of each)"
    )
