"""Keep the online store fresh from `analytics.feature_dirty`, the member ids the rollup
worker queues in the same transaction as the rollups it changed.

Not Feast's `materialize_incremental`: that selects rows by an event-time window, so a
late row (event_ts before the last run) is never written (feast-dev/feast#4133), and it
loads the whole window into memory (#6307). Here a run claims queued member ids in
batches (DELETE ... FOR UPDATE SKIP LOCKED: concurrent runs never take the same rows),
reads each member's latest row of every feature view's source, writes it with
`write_to_online_store`, and commits the claim only after Redis accepted it: a crash
returns the ids to the queue (at least once; HSET is idempotent). Memory is bounded by
the batch size whatever the backlog.

The YAML sets `skip_dedup: true`: Feast's Redis dedup drops a write whose event_ts is not
newer than the stored one, which would drop a late correction (a recomputed day keeps
its event_ts). Ordering is ours instead: only the latest row per member is written, and
the claim makes one writer per member at a time."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

from backend.features.catalogue import source_table

if TYPE_CHECKING:
    import uuid

    import pandas as pd
    import psycopg
    from feast import FeatureStore, FeatureView

    from backend.db.access import DatabaseAccess

BATCH = 5_000
LOCK = 0x72656A_0F  # pg advisory lock key of the materialiser (session-level)

_CLAIM = """
DELETE FROM analytics.feature_dirty WHERE id IN (
    SELECT id FROM analytics.feature_dirty ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED)
RETURNING member_id
"""


@dataclass
class Report:
    claimed: int = 0  # queue rows taken (a member can be queued many times)
    members: int = 0
    rows_in: int = 0  # source rows read (latest per member per source)
    rows_out: dict[str, int] = field(default_factory=dict)  # per feature view
    erased: int = 0  # members with no row left anywhere: their online key removed
    batches: int = 0
    seconds: float = 0.0
    skipped: bool = False  # another run holds the lock: nothing done


@dataclass(frozen=True)
class _Source:
    """One analytics view and the feature views that read it (daily_activity and sleep
    share member_daily: one query for both)."""

    table: tuple[str, str]
    timestamp: str
    created: str
    views: tuple[FeatureView, ...]

    @property
    def columns(self) -> list[str]:
        names = {f.name for fv in self.views for f in fv.features}
        return sorted(names)


def _sources(store: FeatureStore) -> list[_Source]:
    by_table: dict[tuple[str, str], list[FeatureView]] = defaultdict(list)
    for fv in store.list_feature_views():
        if fv.online:
            by_table[source_table(fv.batch_source)].append(fv)
    out = []
    for table, fvs in sorted(by_table.items()):
        source: Any = fvs[0].batch_source
        out.append(
            _Source(
                table=table,
                timestamp=source.timestamp_field,
                created=source.created_timestamp_column,
                views=tuple(sorted(fvs, key=lambda v: v.name)),
            )
        )
    return out


def _latest(
    conn: psycopg.Connection, src: _Source, members: list[uuid.UUID]
) -> list[tuple[Any, ...]]:
    # The newest event_ts per member; among recomputations of it, the newest computation.
    query = sql.SQL(
        "SELECT DISTINCT ON (member_uuid) member_id, {ts}, {created}, {cols} FROM {table}"
        " WHERE member_uuid = ANY(%(ids)s)"
        " ORDER BY member_uuid, {ts} DESC, {created} DESC"
    ).format(
        ts=sql.Identifier(src.timestamp),
        created=sql.Identifier(src.created),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in src.columns),
        table=sql.Identifier(*src.table),
    )
    return conn.execute(query, {"ids": members}).fetchall()


def _frame(src: _Source, fv: FeatureView, rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    import pandas as pd
    from feast.types import Int64

    columns = ["member_id", src.timestamp, src.created, *src.columns]
    df = pd.DataFrame(rows, columns=columns)
    for f in fv.features:
        if f.dtype == Int64:
            # Nullable ints: a NULL day must not turn the column into floats.
            df[f.name] = df[f.name].astype("Int64")
    for c in (src.timestamp, src.created):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df[["member_id", src.timestamp, src.created, *(f.name for f in fv.features)]]


def _erase_online(store: FeatureStore, members: Iterable[str]) -> int:
    """Members with no feature row left (erased, or every value retracted): remove their
    Redis key, which holds every view's values for them."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = [
        _redis_key(
            store.project,
            EntityKey(join_keys=["member_id"], entity_values=[Value(string_val=m)]),
            store.config.entity_key_serialization_version,
        )
        for m in members
    ]
    if not keys:
        return 0
    online: Any = store._get_provider().online_store
    client = online._get_client(store.config.online_store)
    client.delete(*keys)
    return len(keys)


def materialise(
    db: DatabaseAccess,
    store: FeatureStore,
    *,
    batch_size: int = BATCH,
    max_batches: int | None = None,
    lock: bool = True,
) -> Report:
    """Drain the queue (or `max_batches` of it) into the online store. `lock=False`: the
    caller holds the materialiser's lock (`LOCK`) on a connection of its own."""
    started = time.monotonic()
    report = Report()
    sources = _sources(store)
    with db.connect("features", autocommit=True) as conn:
        # One run at a time: two runs claiming the same member (queued twice) could read
        # different snapshots and write the older one last.
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK,)).fetchone()
        if lock and not (locked and locked[0]):
            report.skipped = True
            return report
        while max_batches is None or report.batches < max_batches:
            with conn.transaction():
                claimed = [r[0] for r in conn.execute(_CLAIM, {"n": batch_size}).fetchall()]
                if not claimed:
                    break
                members = sorted(set(claimed))
                seen: set[str] = set()
                for src in sources:
                    rows = _latest(conn, src, members)
                    report.rows_in += len(rows)
                    seen.update(r[0] for r in rows)
                    if not rows:
                        continue
                    for fv in src.views:
                        store.write_to_online_store(fv.name, _frame(src, fv, rows))
                        report.rows_out[fv.name] = report.rows_out.get(fv.name, 0) + len(rows)
                report.erased += _erase_online(store, {str(m) for m in members} - seen)
                report.claimed += len(claimed)
                report.members += len(members)
                report.batches += 1
            # Leaving the block commits the claim: Redis has every row by now.
    report.seconds = time.monotonic() - started
    return report
