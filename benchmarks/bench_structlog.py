"""Benchmark 2b: what ``SMNProcessor`` adds to a structlog chain, for an error event and an info event.

The chain ``[add_log_level, TimeStamper(fmt="iso"), SMNProcessor, JSONRenderer]`` printing to
``os.devnull`` through ``PrintLogger`` (a logger as ``structlog.get_logger()`` gives it: a lazy proxy,
cached on first use, filtering below INFO) vs the same chain without the processor, timed in interleaved
batches in one process. The processor pages a running ``FakeSMNServer``; the errors are all of one kind,
so they fold into the page of their window, as a repeated error does in a service.
Targets: error events <= 1.2x the chain without the processor; info events cost at most 0.5 us more
(the median of the per-round differences: a few percent of the call, so drifting load must cancel).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from _common import Row, median, plus_us, quartiles, smn_settings, times, us, verdict
from _rig import Rig, per_call, spread

TITLE = "2b. structlog chain with SMNProcessor"
ERROR_TARGET = 1.2
#: Seconds an info event may cost more with the processor in the chain ("unchanged").
INFO_TARGET = 0.5e-6
#: (rounds, calls per batch) per mode.
SIZES = {"full": (150, 1000), "quick": (40, 1000), "smoke": (3, 50)}


def chain(processor: Any) -> list[Any]:
    """The processors a structlog user writes, with ``processor`` in third place (left out if None)."""
    import structlog

    middle = [processor] if processor is not None else []
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        *middle,
        structlog.processors.JSONRenderer(),
    ]


@contextmanager
def structlog_rig(server: Any) -> Iterator[Rig]:
    """Two structlog loggers, with and without the processor; it has sent its first page before measuring."""
    import structlog

    from smn_alert import SMNProcessor

    with ExitStack() as stack:
        devnull = stack.enter_context(open(os.devnull, "w"))
        processor = SMNProcessor(**smn_settings(server, budget=1000))
        stack.callback(processor.close)
        loggers = {
            name: structlog.wrap_logger(
                structlog.PrintLogger(file=devnull),
                processors=chain(processor if name == "smn" else None),
                wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                cache_logger_on_first_use=True,
            )
            for name in ("smn", "plain")
        }
        loggers["smn"].error("warm-up: start the worker and send the first page")
        server.wait_for_messages(1, timeout=10.0)
        yield Rig(loggers, [processor], None)


def run(mode: str) -> list[Row]:
    from smn_alert.testing import FakeSMNServer

    rounds, calls = SIZES[mode]

    def errors(log: Any) -> None:
        for _ in range(calls):
            log.error("db timeout", after_s=30, host="db-1")

    def infos(log: Any) -> None:
        for order in range(calls):
            log.info("order served", order=order, ms=12)

    with FakeSMNServer() as server, structlog_rig(server) as bench:
        error_samples = bench.measure(errors, rounds)
        info_samples = bench.measure(infos, rounds, seed=6)
        paged = bench.paged()
    return _rows(per_call(error_samples, calls), per_call(info_samples, calls), calls, paged)


def _rows(error: dict[str, list[float]], info: dict[str, list[float]], calls: int, paged: str) -> list[Row]:
    err = {name: median(values) for name, values in error.items()}
    inf = {name: median(values) for name, values in info.items()}
    # A difference of a few percent: the median of the per-round differences (both timed in the same round,
    # moments apart) cancels the load that drifts between rounds on a shared machine.
    paired = [smn - plain for smn, plain in zip(info["smn"], info["plain"])]
    ratio, added = err["smn"] / err["plain"], median(paired)
    added_ok = verdict(added <= INFO_TARGET)
    low, high = quartiles(paired)
    labels = {"smn": "with SMNProcessor", "plain": "without"}
    size = f"{len(error['smn'])} samples x {calls} calls each"
    info_note = (
        f"{size}; cost added: median of the per-round differences [p25-p75] {plus_us(added)} "
        f"[{low * 1e6:+.2f} to {high * 1e6:+.2f}], "
        f"difference of the medians {plus_us(inf['smn'] - inf['plain'])}; "
        f"median [p25-p75] in us: {spread(info, labels)}"
    )
    return [
        Row("structlog.error", "error event, median per call", us(err["smn"]), f"without {us(err['plain'])}",
            times(ratio), f"<= {ERROR_TARGET:.1f}x", verdict(ratio <= ERROR_TARGET),
            f"{size}; median [p25-p75] in us: {spread(error, labels)}; {paged}", {"median": err}),
        Row("structlog.info", "info event, cost added", plus_us(added), f"without {us(inf['plain'])}",
            times(inf["smn"] / inf["plain"]), f"<= +{INFO_TARGET * 1e6:.1f} us", added_ok,
            info_note, {"median": inf, "added": added}),
    ]  # fmt: skip
