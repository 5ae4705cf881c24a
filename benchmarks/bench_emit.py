"""Benchmark 1: what ``logger.error("db timeout after %s s", 30)`` costs the application thread.

SMNHandler vs NullHandler vs the stdlib QueueHandler, timed in interleaved batches in one process.
Targets: median per call <= 1.0x QueueHandler; the pager's cost above NullHandler <= 1 us and <= 0.15x
QueueHandler's cost above NullHandler.
"""

from __future__ import annotations

import logging

from _common import Row
from _rig import rig, rows

TITLE = "1. logger.error() on the application thread"
TARGET = 1.0
#: The pager's cost above NullHandler: at most this many seconds, and this share of QueueHandler's.
OVERHEAD_TARGET = (1e-6, 0.15)
#: (rounds, calls per batch) per mode.
SIZES = {"full": (200, 1000), "quick": (60, 1000), "smoke": (3, 50)}


def run(mode: str) -> list[Row]:
    from smn_alert.testing import FakeSMNServer

    rounds, calls = SIZES[mode]

    def batch(logger: logging.Logger) -> None:
        error = logger.error
        for _ in range(calls):
            error("db timeout after %s s", 30)

    with FakeSMNServer() as server, rig(server, "bench.emit") as bench:
        samples = bench.measure(batch, rounds)
    return rows("emit.error", samples, calls, TARGET, overhead=OVERHEAD_TARGET)
