"""The three handlers benchmarks 1 and 2 compare, timed in interleaved batches on the application thread.

``SMNHandler`` pages through a running ``FakeSMNServer``; its worker drains in the background while a
batch runs, which is part of what the batch costs. ``NullHandler`` is the floor (what ``logger.error``
costs with a handler that does nothing); ``QueueHandler`` (no formatter, no listener) is what a user would
pick instead. Between batches, off the clock, the QueueHandler's queue is emptied and the SMN worker is
given time to drain what the last batch left, so no batch pays for another handler's leftovers.
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import queue
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Callable

from _common import Row, attached, median, percentile, smn_settings, times, us, verdict

NAMES = ("smn", "null", "queue")
Batch = Callable[[logging.Logger], None]


class Rig:
    """One logger per handler; ``measure`` times ``batch`` on each of them in shuffled order per round."""

    def __init__(self, loggers: dict[str, logging.Logger], smn: Any, q: queue.Queue[Any]) -> None:
        self.loggers, self.smn, self.queue = loggers, smn, q

    def settle(self) -> None:
        """Off the clock: empty the queue, let the SMN worker drain its buffer (private, benchmark only)."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        buffer = getattr(getattr(self.smn, "_dispatcher", None), "_buffer", ())
        deadline = time.monotonic() + 2.0
        while buffer and time.monotonic() < deadline:
            time.sleep(0.0005)

    def measure(self, batch: Batch, rounds: int, seed: int = 5) -> dict[str, list[float]]:
        """Seconds per batch for each handler, ``rounds`` samples each, interleaved."""
        rng = random.Random(seed)
        samples: dict[str, list[float]] = {name: [] for name in NAMES}
        order = list(NAMES)
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                logger = self.loggers[name]
                start = time.perf_counter()
                batch(logger)
                samples[name].append(time.perf_counter() - start)
                self.settle()
            gc.collect()
        return samples


@contextmanager
def rig(server: Any, prefix: str) -> Iterator[Rig]:
    """The three handlers on three loggers; the SMN handler has sent its first page before measuring."""
    from smn_alert import SMNHandler

    q: queue.Queue[Any] = queue.Queue()
    smn = SMNHandler(**smn_settings(server, budget=1000))
    handlers = {"smn": smn, "null": logging.NullHandler(), "queue": logging.handlers.QueueHandler(q)}
    with ExitStack() as stack:
        stack.callback(smn.close)
        loggers = {name: stack.enter_context(attached(f"{prefix}.{name}", h)) for name, h in handlers.items()}
        loggers["smn"].error("warm-up: start the worker and send the first page")
        server.wait_for_messages(1, timeout=10.0)
        yield Rig(loggers, smn, q)


def rows(bench: str, samples: dict[str, list[float]], calls: int, target: float) -> list[Row]:
    """The verdict row (median per call vs QueueHandler) and the p99 and overhead rows."""
    per_call = {name: [s / calls for s in values] for name, values in samples.items()}
    med = {name: median(values) for name, values in per_call.items()}
    p99 = {name: percentile(values, 99) for name, values in per_call.items()}
    ratio = med["smn"] / med["queue"]
    over_smn, over_queue = med["smn"] - med["null"], med["queue"] - med["null"]
    data = {"median": med, "p99": p99, "samples": len(per_call["smn"]), "calls_per_sample": calls}
    note = f"NullHandler {us(med['null'])}/call; {len(per_call['smn'])} samples x {calls} calls each"
    return [
        Row(bench, "median per call", us(med["smn"]), f"QueueHandler {us(med['queue'])}", times(ratio),
            f"<= {target:.1f}x", verdict(ratio <= target), note, data),
        Row(f"{bench}.p99", "p99 of sample means", us(p99["smn"]), f"QueueHandler {us(p99['queue'])}",
            times(p99["smn"] / p99["queue"])),
        Row(f"{bench}.overhead", "cost above NullHandler", us(over_smn), f"QueueHandler {us(over_queue)}",
            times(over_smn / over_queue) if over_queue > 0 else "-"),
    ]  # fmt: skip
