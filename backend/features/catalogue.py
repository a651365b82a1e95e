"""Reading Feast's definitions for our own SQL: which analytics view a feature view reads,
its timestamps, its features. Names come from the registry (our repository), never from
a request, and still only ever reach SQL as quoted identifiers."""

from __future__ import annotations

import re
from typing import Any

_TABLE = re.compile(r"^([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)$")


def source_table(source: Any) -> tuple[str, str]:
    """(schema, view) of a PostgreSQLSource declared with `table="analytics.x"`; a source
    given as a query is not something we splice into SQL."""
    found = _TABLE.match(source.get_table_query_string())
    if not found:
        raise ValueError(f"feature source {source.name!r} must name a schema-qualified table")
    return found.group(1), found.group(2)


# The LOINC codes each feature view is computed from: a coach (or a study) sees a view's
# values only when the member consents to every one of these for that purpose.
VIEW_CODES: dict[str, tuple[str, ...]] = {
    "daily_activity": ("55423-8", "x-rejuve:workout", "8867-4"),
    "sleep": ("93832-4", "x-rejuve:sleep-stage"),
    "cardio": ("40443-4", "80404-7"),
    "latest_labs": ("4548-4", "13457-7", "1988-5", "2339-0"),
}


def view_codes(view: str) -> tuple[str, ...]:
    """Unknown views need consent to something no one can consent to: never shown."""
    return VIEW_CODES.get(view, ("x-rejuve:unmapped-feature-view",))


def views(store: Any) -> list[tuple[str, list[str], list[str], str]]:
    """(view, features, services that include it, description) for every feature view the
    registry holds, by name: the catalogue the API and the demo show."""
    services: dict[str, list[str]] = {}
    for svc in store.list_feature_services():
        for projection in svc.feature_view_projections:
            services.setdefault(projection.name, []).append(svc.name)
    return [
        (
            fv.name,
            [f.name for f in fv.features],
            sorted(services.get(fv.name, [])),
            fv.description or "",
        )
        for fv in sorted(store.list_feature_views(), key=lambda v: v.name)
    ]
