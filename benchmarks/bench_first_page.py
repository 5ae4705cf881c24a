"""Benchmark 4: from ``logger.critical()`` to the request arriving at FakeSMNServer, after quiet spells.

Three kinds of trial, latency = the server's ``received_at`` minus ``time.time()`` just before the call:
- cold: the first alert of a fresh process (a subprocess each): starts the worker, imports requests, connects;
- fresh: a new handler per trial in this process (requests already imported): worker start and connect;
- warm: one handler, the quiet spell skipped with an injected clock: the steady state of a running service.
Target: p99 <= 100 ms on loopback (judged for the fresh and warm trials; cold is reported).
Run as ``bench_first_page.py --child`` it is one cold trial (used by ``run``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from _common import (
    HERE,
    Row,
    attached,
    median,
    ms,
    percentile,
    run_json,
    smn_settings,
    verdict,
)

from smn_alert.testing import FakeClock

TITLE = "4. first page after a quiet spell"
TARGET = 0.100
#: (cold subprocess trials, fresh-handler trials, warm trials) per mode.
SIZES = {"full": (10, 50, 50), "quick": (3, 20, 20), "smoke": (1, 2, 2)}
#: Off the clock between trials, so the worker is idle when the next alert comes.
PAUSE = 0.05


def _one_page(server: Any, logger: logging.Logger, trial: int) -> float:
    """Log one CRITICAL and wait for it at the server; its latency in seconds."""
    seen = len(server.messages)
    time.sleep(PAUSE)
    start = time.time()
    logger.critical("payment service down (trial %d)", trial)
    arrived: float = server.wait_for_messages(seen + 1, timeout=10.0)[seen].received_at
    return arrived - start


def fresh_trials(server: Any, trials: int) -> list[float]:
    from smn_alert import SMNHandler

    latencies = []
    for trial in range(trials):
        handler = SMNHandler(**smn_settings(server, budget=1000))
        try:
            with attached("bench.first_page.fresh", handler) as logger:
                latencies.append(_one_page(server, logger, trial))
        finally:
            handler.close()
    return latencies


def warm_trials(server: Any, trials: int) -> list[float]:
    from smn_alert import SMNHandler

    clock = FakeClock()
    handler = SMNHandler(**smn_settings(server, budget=1000), clock=clock)
    try:
        with attached("bench.first_page.warm", handler) as logger:
            _one_page(server, logger, -1)  # off the record: starts the worker and connects
            latencies = []
            for trial in range(trials):
                clock.advance(handler.settings.window + 1)  # a whole quiet window passes
                latencies.append(_one_page(server, logger, trial))
    finally:
        handler.close()
    return latencies


def child() -> dict[str, Any]:
    from smn_alert import SMNHandler
    from smn_alert.testing import FakeSMNServer

    with FakeSMNServer() as server:
        handler = SMNHandler(**smn_settings(server))
        cold = "requests" not in sys.modules
        try:
            with attached("bench.first_page.cold", handler) as logger:
                latency = _one_page(server, logger, 0)
        finally:
            handler.close()
    return {"latency": latency, "requests_not_imported_before": cold}


def run(mode: str) -> list[Row]:
    from smn_alert.testing import FakeSMNServer

    cold_n, fresh_n, warm_n = SIZES[mode]
    cold = [run_json([str(HERE / "bench_first_page.py"), "--child"], timeout=60) for _ in range(cold_n)]
    with FakeSMNServer() as server:
        fresh = fresh_trials(server, fresh_n)
        warm = warm_trials(server, warm_n)
    cold_lat = [c["latency"] for c in cold]
    really_cold = all(c["requests_not_imported_before"] for c in cold)
    return [
        Row("first_page.cold", "p50 / max", f"{ms(median(cold_lat))} / {ms(max(cold_lat))}", "", "",
            "(reported)", "INFO", f"{cold_n} fresh processes; each imports requests on its first page: "
            f"{really_cold}", {"latencies": cold_lat}),
        _judged("first_page.fresh", fresh, "new handler per trial: starts a worker thread and connects"),
        _judged("first_page.warm", warm, "one handler; the quiet spell skipped with an injected clock"),
    ]  # fmt: skip


def _judged(bench: str, latencies: list[float], note: str) -> Row:
    p50, p99 = median(latencies), percentile(latencies, 99)
    shown, target = f"{ms(p50)} / {ms(p99)}", f"p99 <= {ms(TARGET)}"
    note = f"{len(latencies)} trials; {note}"
    return Row(
        bench, "p50 / p99", shown, "", "", target, verdict(p99 <= TARGET), note, {"latencies": latencies}
    )


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    print(json.dumps(child()))
