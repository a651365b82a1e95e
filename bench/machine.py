"""What a benchmark's JSON records of the machine it ran on: on a shared 2-core VM a
figure means little without the load that other work put on it during the run."""

from __future__ import annotations

import os
import platform


def described(load_before: tuple[float, float, float]) -> dict[str, object]:
    """CPUs, Python, and the load average before the run (`load_before`) and now."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
