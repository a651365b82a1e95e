"""Prefect flow keeping Feast's online store fresh: a thin wrapper over
`backend.features.materialise` (tested on its own). Rows in/out go to the run's log and to
a table artifact, so the Prefect UI shows what each run did."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from backend.features.environment import close_store, open_store
from backend.features.materialise import BATCH, materialise
from backend.runtime import Runtime


@flow(name="materialise-features")
def materialise_features_flow(batch_size: int = BATCH) -> dict[str, object]:
    """Drain `analytics.feature_dirty` into the online store, `batch_size` members at a time."""
    ctx = Runtime.from_env()
    store = open_store(ctx)
    try:
        report = materialise(ctx.db, store, batch_size=batch_size)
    finally:
        close_store(store)
    rows_out = sum(report.rows_out.values())
    get_run_logger().info(
        "materialised %d member(s) in %d batch(es): %d queue row(s), %d source row(s) in,"
        " %d feature row(s) out %s, %d online key(s) removed, %.2f s",
        report.members,
        report.batches,
        report.claimed,
        report.rows_in,
        rows_out,
        report.rows_out,
        report.erased,
        report.seconds,
    )
    if report.batches:
        create_table_artifact(
            key="materialise-features",
            table=[
                {"feature_view": name, "rows_out": n} for name, n in sorted(report.rows_out.items())
            ]
            + [{"feature_view": "(source rows in)", "rows_out": report.rows_in}],
            description=f"{report.members} member(s), {report.claimed} queue row(s)",
        )
    return {
        "members": report.members,
        "claimed": report.claimed,
        "rows_in": report.rows_in,
        "rows_out": report.rows_out,
        "erased": report.erased,
        "batches": report.batches,
        "seconds": round(report.seconds, 3),
    }
