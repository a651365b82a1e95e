"""CLI start-up benchmark: wall and CPU time of `rejuve --help`, `rejuve members --help`
and `rejuve status` (the local stack up), each run N times in a row.

    .venv/bin/python bench/cli.py [--runs N]

CPU time (user + system of the child) is shown beside the wall clock: on a shared machine
the wall clock measures the other processes too. Targets (issue 8): --help under 1 s,
status under 1.5 s on an idle machine. Prints a table and writes bench/results/cli.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
REJUVE = str(Path(sys.executable).parent / "rejuve")
COMMANDS = (("--help",), ("members", "--help"), ("status",))


def _once(args: tuple[str, ...]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([REJUVE, *args], capture_output=True, check=True, timeout=300)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    console = Console()
    table = Table(title=f"rejuve start-up ({runs} runs, load {os.getloadavg()[0]:.1f})")
    for col in ("command", "wall median s", "wall min s", "CPU median s"):
        table.add_column(col)
    result: dict[str, object] = {"machine": platform.node(), "load": os.getloadavg()[0]}
    for args in COMMANDS:
        _once(args)  # warm the file cache
        walls, cpus = zip(*(_once(args) for _ in range(runs)), strict=True)
        name = "rejuve " + " ".join(args)
        row = {
            "wall_median": statistics.median(walls),
            "wall_min": min(walls),
            "cpu_median": statistics.median(cpus),
        }
        result[name] = row
        table.add_row(name, *(f"{v:.2f}" for v in row.values()))
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(result, indent=2))
    console.print(f"written {RESULTS / 'cli.json'}")


if __name__ == "__main__":
    main()
