"""The researcher's client: HTTPS to the governed backend only, no database driver.

import workbench
wb = workbench.connect()          # inside a Hub-spawned notebook: finds everything
daily = wb.cohort_stats("sleep-1", code="8867-4", start="2026-11-01", end="2026-11-08")
workbench.cohort_plot(daily)      # withheld cells are gaps, with the reason
wb.training_set("sleep-1", entity_df)   # point-in-time features (row-level studies)
"""

from workbench.client import Workbench, WorkbenchError, connect
from workbench.explorer import CohortExplorer, Filters
from workbench.plots import cohort_plot

__all__ = ["CohortExplorer", "Filters", "Workbench", "WorkbenchError", "cohort_plot", "connect"]
