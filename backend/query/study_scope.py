"""What a researcher may read in a study, as SQL: observations of the study's consenting
members (consent per data category), only while the researcher is on the open study.
Every study query (datasets, cohort statistics) selects from this."""

from __future__ import annotations

from psycopg import sql

from backend.governance.consent import CONSENTED_CODES

# Parameters: study, viewer, purpose, codes, categories, start, end; the alias is `o`.
STUDY_OBSERVATIONS = sql.SQL("""
  from processed.observations o
  join ({consented}) ok on ok.member_id = o.member_id and ok.code = o.code
 where exists (select 1 from governance.study_researchers r
                 join governance.studies s on s.study_id = r.study_id
                where r.study_id = %(study)s and r.researcher = %(viewer)s
                  and s.closed_at is null)
   and o.observed_at >= %(start)s and o.observed_at < %(end)s
""").format(consented=sql.SQL(CONSENTED_CODES))
