"""Benchmark 1: what ``logger.error("db timeout after %s s", 30)`` costs the application thread.

SMNHandler vs NullHandler vs the stdlib QueueHandler, timed in interleaved batches in one process.
Targets: median per call <= 1.0x QueueHandler; the pager's cost above NullHandler <= 1 us and <= 0.15x
QueueHandler's cost above NullHandler.
"""

from __future__ import annotations

from _common import Row
from _rig import ERROR_SIZES, error_batch, rig, rows

TITLE = "1. logger.error() on the application thread"
TARGET = 1.0
#: The pager's cost above NullHandler: at most this many seconds, and this share of QueueHandler's.
OVERHEAD_TARGET = (1e-6, 0.15)


def run(mode: str) -> list[Row]:
    from smn_alert.testing import FakeSMNServer

    rounds, calls = ERROR_SIZES[mode]
    batch = error_batch(calls)

    with FakeSMNServer() as server, rig(server, "bench.emit") as bench:
        samples = bench.measure(batch, rounds)
    return rows("emit.error", samples, calls, TARGET, overhead=OVERHEAD_TARGET)
