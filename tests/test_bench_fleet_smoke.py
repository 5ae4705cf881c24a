"""benchmarks/bench_fleet.py runs end to end at smoke size: its rows exist and are well-formed.

No timing or figure is asserted: the benchmark reports its targets as PASS / MISS itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ROWS = (
    "fleet.round_trips.sqlite",
    "fleet.round_trips.redis",
    "fleet.emit.sqlite",
    "fleet.emit.redis",
    "fleet.sim200",
    "fleet.sim200.counts",
    "fleet.sim200.duplicates",
    "fleet.sim200.wall",
)


@pytest.fixture(scope="module")
def rows() -> list[Any]:
    sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import their siblings by name
    import bench_fleet

    return bench_fleet.run("smoke")


def test_every_row_is_there_once(rows: list[Any]) -> None:
    assert [row.bench for row in rows] == list(ROWS)


def test_rows_are_well_formed(rows: list[Any]) -> None:
    for row in rows:
        assert row.result in ("PASS", "MISS", "INFO"), (row.bench, row.result, row.note)
        assert row.value and row.measure
        if row.result != "INFO":
            assert row.target


def test_the_simulation_counted_every_worker(rows: list[Any]) -> None:
    """Every forked worker reported back and exited on its own (none was killed at the deadline)."""
    import bench_fleet

    sim = next(row for row in rows if row.bench == "fleet.sim200")
    assert sim.data["errors"] == [] and sim.data["killed"] == 0
    assert len(sim.data["times"]) == bench_fleet.SIM["smoke"][0]
