"""Benchmark 1: what ``logger.error("db timeout after %s s", 30)`` costs the application thread.

SMNHandler vs NullHandler vs the stdlib QueueHandler, timed in interleaved batches in one process.
Target: median per call <= 1.0x QueueHandler.
"""

from __future__ import annotations

import logging

from _common import Row
from _rig import rig, rows

TITLE = "1. logger.error() on the application thread"
TARGET = 1.0
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
    return rows("emit.error", samples, calls, TARGET)
