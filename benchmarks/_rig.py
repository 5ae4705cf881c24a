"""The handlers (or loggers) the application-thread benchmarks compare, timed in interleaved batches.

``SMNHandler`` pages through a running ``FakeSMNServer``; its worker drains in the background while a
batch runs, which is part of what the batch costs. ``NullHandler`` is the floor (what ``logger.error``
costs with a handler that does nothing); ``QueueHandler`` (no formatter, no listener) is what a user would
pick instead. Between batches, off the clock, the QueueHandler's queue is emptied and the SMN worker is
given time to drain what the last batch left, so no batch pays for another handler's leftovers.
The same :class:`Rig` times structlog loggers (with and without ``SMNProcessor``) for benchmark 7.
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import queue
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Optional

from _common import Row, attached, median, percentile, plus_us, quartiles, smn_settings, times, us, verdict

NAMES = ("smn", "null", "queue")
#: (rounds, calls per batch) per mode, for the ``logger.error()`` benchmarks (1 and 1b).
ERROR_SIZES = {"full": (200, 1000), "quick": (60, 1000), "smoke": (3, 50)}


def error_batch(calls: int) -> Callable[[logging.Logger], None]:
    """One timed batch: ``calls`` times ``logger.error("db timeout after %s s", 30)``, one kind repeated."""

    def batch(logger: logging.Logger) -> None:
        error = logger.error
        for _ in range(calls):
            error("db timeout after %s s", 30)

    return batch


Batch = Callable[[Any], None]


class Rig:
    """Named loggers; ``measure`` times ``batch`` on each of them in shuffled order per round.

    Args:
        loggers: The loggers to compare, by name (stdlib or structlog: ``batch`` gets one of them).
        pagers: The SMN handlers or processors whose workers must drain between batches.
        q: The QueueHandler's queue, emptied between batches (None when there is none).
    """

    def __init__(self, loggers: dict[str, Any], pagers: Sequence[Any], q: Optional[queue.Queue[Any]]) -> None:
        self.loggers, self.pagers, self.queue = loggers, pagers, q

    def settle(self) -> None:
        """Off the clock: empty the queue, let the SMN workers drain their buffers (a private attribute)."""
        while self.queue is not None:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        for pager in self.pagers:
            buffer = getattr(getattr(pager, "_dispatcher", None), "_buffer", ())
            deadline = time.monotonic() + 2.0
            while buffer and time.monotonic() < deadline:
                time.sleep(0.0005)

    def paged(self) -> str:
        """What the (first) pager did with the alerts it was given, for a row's note: it pages, and folds."""
        stats = self.pagers[0].stats()
        counts = ", ".join(
            f"{key} {stats[key]:,}" for key in ("received", "sent", "folded", "dropped", "pending")
        )
        return f"the pager sent {stats['pages']} SMS; stats(): {counts}"

    def measure(self, batch: Batch, rounds: int, seed: int = 5) -> dict[str, list[float]]:
        """Seconds per batch for each logger, ``rounds`` samples each, interleaved."""
        rng = random.Random(seed)
        samples: dict[str, list[float]] = {name: [] for name in self.loggers}
        order = list(self.loggers)
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
def rig(server: Any, prefix: str, beside: Sequence[logging.Handler] = ()) -> Iterator[Rig]:
    """The three handlers on three loggers, each after the handlers ``beside`` (the same ones for all three).

    The SMN handler has sent its first page before measuring.
    """
    from smn_alert import SMNHandler

    q: queue.Queue[Any] = queue.Queue()
    smn = SMNHandler(**smn_settings(server, budget=1000))
    handlers = {"smn": smn, "null": logging.NullHandler(), "queue": logging.handlers.QueueHandler(q)}
    with ExitStack() as stack:
        stack.callback(smn.close)
        loggers = {
            name: stack.enter_context(attached(f"{prefix}.{name}", *beside, handler))
            for name, handler in handlers.items()
        }
        loggers["smn"].error("warm-up: start the worker and send the first page")
        server.wait_for_messages(1, timeout=10.0)
        yield Rig(loggers, [smn], q)


def per_call(samples: dict[str, list[float]], calls: int) -> dict[str, list[float]]:
    """Seconds per call in each sample."""
    return {name: [s / calls for s in values] for name, values in samples.items()}


def spread(values: dict[str, list[float]], labels: dict[str, str]) -> str:
    """``label median [p25-p75]`` per call for each of ``labels``, for a row's note."""
    parts = []
    for name, label in labels.items():
        low, high = quartiles(values[name])
        parts.append(f"{label} {median(values[name]) * 1e6:.2f} [{low * 1e6:.2f}-{high * 1e6:.2f}]")
    return "; ".join(parts)


def overhead_ok(over_smn: float, over_queue: float, most: float, share: float) -> bool:
    """Whether the pager's cost above NullHandler is <= ``most`` s and <= ``share`` of QueueHandler's."""
    return over_smn <= most and over_queue > 0 and over_smn / over_queue <= share


def rows(
    bench: str,
    samples: dict[str, list[float]],
    calls: int,
    target: float,
    overhead: Optional[tuple[float, float]] = None,
) -> list[Row]:
    """The verdict row (median per call vs QueueHandler), the p99 row and the overhead row.

    ``overhead`` (seconds, share of QueueHandler's) makes the overhead row a target row too.
    """
    values = per_call(samples, calls)
    med = {name: median(v) for name, v in values.items()}
    p99 = {name: percentile(v, 99) for name, v in values.items()}
    ratio = med["smn"] / med["queue"]
    over_smn, over_queue = med["smn"] - med["null"], med["queue"] - med["null"]
    data = {"median": med, "p99": p99, "samples": len(values["smn"]), "calls_per_sample": calls}
    note = f"NullHandler {us(med['null'])}/call; {len(values['smn'])} samples x {calls} calls each"
    labels = {"smn": "SMNHandler", "queue": "QueueHandler", "null": "NullHandler"}
    over_target, over_result, over_note = "", "INFO", ""
    if overhead is not None:
        most, share = overhead
        over_target = f"<= {most * 1e6:.0f} us, <= {share:.2f}x"
        over_result = verdict(overhead_ok(over_smn, over_queue, most, share))
        over_note = "per call, median [p25-p75] in us: " + spread(values, labels)
    return [
        Row(bench, "median per call", us(med["smn"]), f"QueueHandler {us(med['queue'])}", times(ratio),
            f"<= {target:.1f}x", verdict(ratio <= target), note, data),
        Row(f"{bench}.p99", "p99 of sample means", us(p99["smn"]), f"QueueHandler {us(p99['queue'])}",
            times(p99["smn"] / p99["queue"])),
        Row(f"{bench}.overhead", "cost above NullHandler", us(over_smn), f"QueueHandler {us(over_queue)}",
            times(over_smn / over_queue) if over_queue > 0 else "-", over_target, over_result, over_note),
    ]  # fmt: skip


def beside_rows(
    bench: str, samples: dict[str, list[float]], calls: int, target: float, what: str, paged: str
) -> list[Row]:
    """The cost the pager adds beside ``what`` vs what QueueHandler adds there, and the medians."""
    values = per_call(samples, calls)
    med = {name: median(v) for name, v in values.items()}
    over_smn, over_queue = med["smn"] - med["null"], med["queue"] - med["null"]
    ratio = over_smn / over_queue if over_queue > 0 else float("inf")
    labels = {"smn": f"{what}+SMNHandler", "queue": f"{what}+QueueHandler", "null": f"{what}+NullHandler"}
    data = {"median": med, "samples": len(values["smn"]), "calls_per_sample": calls}
    note = (
        f"{len(values['smn'])} samples x {calls} calls each; NullHandler beside it {us(med['null'])}/call; "
    )
    note += paged
    return [
        Row(bench, f"cost added above {what}+NullHandler", plus_us(over_smn),
            f"QueueHandler {plus_us(over_queue)}", times(ratio) if over_queue > 0 else "-",
            f"<= {target:.2f}x", verdict(ratio <= target), note, data),
        Row(f"{bench}.median", "median per call", us(med["smn"]), f"QueueHandler {us(med['queue'])}",
            times(med["smn"] / med["queue"]), "", "INFO",
            "per call, median [p25-p75] in us: " + spread(values, labels)),
    ]  # fmt: skip
