"""Benchmark 2: what ``logger.exception(...)`` costs in an ``except`` block with a real traceback.

QueueHandler formats the whole traceback on the application thread; SMNHandler keeps only the exception
type, value and innermost frame. The raise itself is inside every batch, the same for all three handlers.
Target: median per call <= 0.6x QueueHandler.
"""

from __future__ import annotations

import logging

from _common import Row
from _rig import rig, rows

TITLE = "2. logger.exception() with a 4-frame traceback"
TARGET = 0.6
#: (rounds, calls per batch) per mode.
SIZES = {"full": (80, 200), "quick": (25, 200), "smoke": (3, 20)}


def _query(order: int) -> None:
    raise TimeoutError(f"read timed out after 30 s (order {order})")


def _charge(order: int) -> None:
    _query(order)


def _checkout(order: int) -> None:
    _charge(order)


def run(mode: str) -> list[Row]:
    from smn_alert.testing import FakeSMNServer

    rounds, calls = SIZES[mode]

    def batch(logger: logging.Logger) -> None:
        for order in range(calls):
            try:
                _checkout(order)
            except TimeoutError:
                logger.exception("payment failed for order %s", order)

    with FakeSMNServer() as server, rig(server, "bench.exception") as bench:
        samples = bench.measure(batch, rounds)
    return rows("emit.exception", samples, calls, TARGET)
