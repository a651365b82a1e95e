"""A row-level study with a researcher, for each module of the workbench's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.runtime import Runtime
from tests.workbench import studies


@pytest.fixture(scope="module")
def study(ctx: Runtime) -> Iterator[studies.Study]:
    s = studies.make(ctx, "row-level")
    try:
        yield s
    finally:
        studies.remove(ctx, s)
