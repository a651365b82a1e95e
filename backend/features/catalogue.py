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
