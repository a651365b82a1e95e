"""Object-level rules, as SQL predicates every query composes: the one home of "who may
see which rows". Casbin decides whether a role may use a route at all; these decide which
rows it returns, inside the query itself, so a route that forgot to ask gets nothing.

- a member sees their own rows (`member_self`);
- a coach sees an assigned member (`coach_assigned`), and of that member's observations
  only the data categories the member consents to for coaching (`coaching_codes`);
- a researcher sees a study's data while on the open study (`on_open_study`), and only
  the observations each member consents to for that study (`study_consented`).

Every predicate about one member or one study is uncorrelated (it names `%(member)s` or
`%(study)s`, never a row's column), so PostgreSQL evaluates it once per statement (an
InitPlan) rather than once per row: consent is decided once per request.

Parameters, filled by `params`: viewer, as_member, as_coach, member, study, purpose,
codes, categories.
"""

from __future__ import annotations

import uuid

from psycopg import sql

from backend.governance.consent import CONSENTED_CODES, code_categories, study_purpose
from backend.query.viewer import Viewer

# The viewer's own member record is %(member)s.
MEMBER_SELF = sql.SQL(
    "(%(as_member)s and exists (select 1 from governance.members m"
    " where m.member_id = %(member)s and m.hub_user = %(viewer)s))"
)

# %(member)s is currently assigned to the viewer as their coach.
COACH_ASSIGNED = sql.SQL(
    "(%(as_coach)s and exists (select 1 from governance.coach_assignments a"
    " where a.coach = %(viewer)s and a.member_id = %(member)s and a.revoked_at is null))"
)

# The codes %(member)s consents to for coaching (by data category), as one array.
COACHING_CODES = sql.SQL(
    "coalesce((select array_agg(cc.code)"
    " from governance.consent_effective c"
    " join unnest(%(codes)s::text[], %(categories)s::text[]) as cc(code, category)"
    " on cc.category = c.category"
    " where c.member_id = %(member)s and c.purpose = 'coaching' and c.granted), '{}'::text[])"
)

# The viewer is a researcher on %(study)s, and the study is open.
ON_OPEN_STUDY = sql.SQL(
    "exists (select 1 from governance.study_researchers r"
    " join governance.studies s on s.study_id = r.study_id"
    " where r.study_id = %(study)s and r.researcher = %(viewer)s and s.closed_at is null)"
)

# (member_id, code) pairs of the study purpose %(purpose)s: join on both columns.
STUDY_CONSENTED = sql.SQL("({})").format(sql.SQL(CONSENTED_CODES))


def may_see_member() -> sql.Composable:
    """The viewer may see something of %(member)s: their own record, or an assignment."""
    return sql.SQL("({} or {})").format(MEMBER_SELF, COACH_ASSIGNED)


def member_observations(alias: str) -> sql.Composable:
    """Rows of `alias` (observations) the viewer may see of %(member)s: all of their own,
    or as an assigned coach the codes the member consents to for coaching."""
    o = sql.Identifier(alias)
    return sql.SQL(
        "({o}.member_id = %(member)s and ({own} or ({coach} and {o}.code = any({codes}))))"
    ).format(o=o, own=MEMBER_SELF, coach=COACH_ASSIGNED, codes=COACHING_CODES)


def member_consent_events(alias: str) -> sql.Composable:
    """Consent records (`alias`: consent_events or consent_effective) the viewer may see of
    %(member)s: all of their own; an assigned coach the coaching purpose only (which
    studies a member joined is not a coach's business)."""
    e = sql.Identifier(alias)
    return sql.SQL(
        "({e}.member_id = %(member)s and ({own} or ({coach} and {e}.purpose = 'coaching')))"
    ).format(e=e, own=MEMBER_SELF, coach=COACH_ASSIGNED)


def study_observations(alias: str) -> sql.Composable:
    """`from` and `where` for observations (`alias`) a researcher may use in %(study)s in
    [%(start)s, %(end)s): consenting members' consented codes, while on the open study."""
    return _study_rows("processed.observations", alias, "observed_at")


def study_daily_rollups(alias: str) -> sql.Composable:
    """The same for the daily rollups (`alias`) over whole days in [%(start)s, %(end)s):
    the study rules look only at a row's member and code, and a rollup row has both."""
    return _study_rows("analytics.rollup_daily", alias, "bucket")


def _study_rows(table: str, alias: str, time: str) -> sql.Composable:
    o, t = sql.Identifier(alias), sql.Identifier(time)
    return sql.SQL(
        " from {table} {o}"
        " join {consented} ok on ok.member_id = {o}.member_id and ok.code = {o}.code"
        " where {on_study}"
        " and {o}.{t} >= %(start)s and {o}.{t} < %(end)s"
    ).format(
        table=sql.Identifier(*table.split(".")),
        o=o,
        t=t,
        consented=STUDY_CONSENTED,
        on_study=ON_OPEN_STUDY,
    )


def params(
    viewer: Viewer, *, member: uuid.UUID | None = None, study: str | None = None
) -> dict[str, object]:
    """The rules' parameters for this viewer (and member or study)."""
    codes, categories = code_categories()
    return {
        "viewer": viewer.user,
        "as_member": viewer.has("member"),
        "as_coach": viewer.has("coach"),
        "member": member,
        "study": study,
        "purpose": study_purpose(study) if study is not None else "coaching",
        "codes": codes,
        "categories": categories,
    }
