"""Benchmark 1b: what the pager adds to ``logger.error()`` beside a console handler, as loggers really are.

Every logger that pages also writes somewhere: here a ``StreamHandler`` to ``os.devnull`` with a usual
format, first on each of three loggers, then SMNHandler, QueueHandler or NullHandler. Timed in interleaved
batches in one process, as benchmark 1. The stream's write releases the GIL on every call, so whatever the
pager's worker does per alert runs then and is paid by the application.
Target: the cost the pager adds (above stream + NullHandler) <= 0.25x what a QueueHandler adds there.
"""

from __future__ import annotations

import logging
import os

from _common import Row
from _rig import ERROR_SIZES, beside_rows, error_batch, rig

TITLE = "1b. logger.error() beside a StreamHandler"
TARGET = 0.25
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run(mode: str) -> list[Row]:
    from smn_alert.testing import FakeSMNServer

    rounds, calls = ERROR_SIZES[mode]
    batch = error_batch(calls)

    with open(os.devnull, "w") as devnull, FakeSMNServer() as server:
        stream = logging.StreamHandler(devnull)
        stream.setFormatter(logging.Formatter(FORMAT))
        with rig(server, "bench.beside", beside=[stream]) as bench:
            samples = bench.measure(batch, rounds)
            paged = bench.paged()
    return beside_rows("emit.beside_stream", samples, calls, TARGET, "stream", paged)
