"""The researcher's client: HTTPS to the governed backend only, no database driver.

import workbench
wb = workbench.connect()          # inside a Hub-spawned notebook: finds everything
wb.cohort_stats("sleep-1", code="8867-4", start="2026-11-01", end="2026-11-08")
"""

from workbench.client import Workbench, connect

__all__ = ["Workbench", "connect"]
