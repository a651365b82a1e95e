"""Point-in-time training sets for a study, computed by our own SQL from Feast's feature
definitions (the registry is the catalogue; the analytics views are the data).

Why not Feast's `get_historical_features`: it needs member ids in the entity frame
(uploaded into a table), cannot apply consent inside its SQL, loads everything into
memory and returns naive timestamps. Here, in one parameterised statement:
- the researcher's rows come in as arrays (pseudonym, at, ordinal); pseudonyms resolve to
  members by a join with the study's pseudonym map (computed here with the study key,
  which never reaches the database);
- the study rules are in the SQL: the viewer is on the open study, the study's access
  level is `row-level`, and each member consents to the study (a member with no granted
  study consent has no row; a view's values are NULL unless the member consents to
  every code it is computed from);
- per feature view, the latest source row with `event_ts <= at` and `event_ts >= at - ttl`
  (Feast's semantics: inclusive bounds, ties broken by `computed_at`);
- rows stream from a server-side cursor; no member id is selected.
The output repeats each row's `at` as the caller sent it (time zone kept)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from backend.features.catalogue import source_table, view_codes
from backend.governance.consent import study_purpose
from backend.keys.study_keys import pseudonym
from backend.query import row_rules
from backend.query.viewer import Viewer

FETCH = 10_000


@dataclass(frozen=True)
class ViewSpec:
    """One feature view as the query needs it (from Feast's registry)."""

    name: str
    table: tuple[str, str]
    timestamp: str
    created: str
    ttl: dt.timedelta
    features: tuple[str, ...]


def specs_from_feast(
    store: Any, service: str | None, features: Sequence[str] | None
) -> list[ViewSpec]:
    """The views and features of a feature service, or of `view:feature` references.
    Unknown names raise KeyError (the route's 422)."""
    wanted: dict[str, list[str]] = {}
    if features:
        for ref in features:
            view, _, name = ref.partition(":")
            wanted.setdefault(view, []).append(name)
    else:
        svc = store.get_feature_service(service)
        for proj in svc.feature_view_projections:
            wanted[proj.name] = [f.name for f in proj.features]
    out = []
    for view, names in wanted.items():
        fv = store.get_feature_view(view)
        known = {f.name for f in fv.features}
        missing = [n for n in names if n not in known]
        if missing:
            raise KeyError(f"{view}:{missing[0]}")
        src = fv.batch_source
        out.append(
            ViewSpec(
                name=view,
                table=source_table(src),
                timestamp=src.timestamp_field,
                created=src.created_timestamp_column,
                ttl=fv.ttl or dt.timedelta(0),
                features=tuple(names),
            )
        )
    return out


def columns(specs: Sequence[ViewSpec]) -> list[str]:
    return ["pseudonym", "at", *(f"{s.name}__{f}" for s in specs for f in s.features)]


def study_pseudonyms(
    conn: psycopg.Connection, study: str, key: bytes
) -> tuple[list[str], list[uuid.UUID]]:
    """The study's pseudonym map for members with any granted consent to the study (the
    only ones a training set may contain); the SQL checks consent again, per view."""
    rows = conn.execute(
        "select distinct member_id from governance.consent_effective"
        " where purpose = %(purpose)s and granted",
        {"purpose": study_purpose(study)},
    ).fetchall()
    members = [r[0] for r in rows]
    return [pseudonym(key, m) for m in members], members


def _query(specs: Sequence[ViewSpec]) -> sql.Composed:
    selects: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    for i, s in enumerate(specs):
        alias = sql.Identifier(f"v{i}")
        cols = sql.SQL(", ").join(sql.Identifier(f) for f in s.features)
        selects.extend(sql.SQL("{}.{}").format(alias, sql.Identifier(f)) for f in s.features)
        window = (
            sql.SQL(" and f.{ts} >= e.at - %(ttl{i})s").format(
                ts=sql.Identifier(s.timestamp), i=sql.SQL(str(i))
            )
            if s.ttl
            else sql.SQL("")
        )
        joins.append(
            sql.SQL(
                " left join lateral (select {cols} from {table} f"
                " where f.member_uuid = e.member_id and f.{ts} <= e.at{window}"
                " order by f.{ts} desc, f.{created} desc limit 1) {alias}"
                " on e.codes @> %(codes{i})s::text[]"
            ).format(
                cols=cols,
                table=sql.Identifier(*s.table),
                ts=sql.Identifier(s.timestamp),
                created=sql.Identifier(s.created),
                window=window,
                alias=alias,
                i=sql.SQL(str(i)),
            )
        )
    return sql.SQL(
        "with req as (select * from unnest(%(pseudonyms)s::text[], %(ats)s::timestamptz[])"
        "   with ordinality as r(pseudonym, at, ord)),"
        " map as (select * from unnest(%(map_p)s::text[], %(map_m)s::uuid[])"
        "   as m(pseudonym, member_id)),"
        " ok as ({consented}),"
        " e as (select req.ord, req.pseudonym, req.at, map.member_id,"
        "   array(select ok.code from ok where ok.member_id = map.member_id) as codes"
        "   from req join map using (pseudonym)"
        "   where {on_study} and exists (select 1 from governance.studies s"
        "     where s.study_id = %(study)s and s.access_level = 'row-level'))"
        " select e.ord{sep}{selects} from e{joins}"
        " where cardinality(e.codes) > 0 order by e.ord"
    ).format(
        consented=row_rules.STUDY_CONSENTED,
        on_study=row_rules.ON_OPEN_STUDY,
        sep=sql.SQL(", ") if selects else sql.SQL(""),
        selects=sql.SQL(", ").join(selects),
        joins=sql.SQL("").join(joins),
    )


def training_set(
    conn: psycopg.Connection,
    viewer: Viewer,
    study: str,
    study_key: bytes,
    specs: Sequence[ViewSpec],
    rows: Sequence[tuple[str, dt.datetime]],
) -> Iterator[list[Any]]:
    """Rows of [pseudonym, at (as given), feature...], in the order given, for consenting
    members only. `conn` must not be in autocommit (named cursors need a transaction)."""
    map_p, map_m = study_pseudonyms(conn, study, study_key)
    params: dict[str, Any] = {
        **row_rules.params(viewer, study=study),
        "pseudonyms": [p for p, _ in rows],
        "ats": [a for _, a in rows],
        "map_p": map_p,
        "map_m": map_m,
    }
    for i, s in enumerate(specs):
        params[f"ttl{i}"] = s.ttl
        params[f"codes{i}"] = list(view_codes(s.name))
    with conn.transaction(), conn.cursor(name="training_set") as cur:
        cur.itersize = FETCH
        cur.execute(_query(specs), params)
        for record in cur:
            pseud, at = rows[record[0] - 1]
            yield [pseud, at, *record[1:]]
