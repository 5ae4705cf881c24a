"""Benchmark 6: what importing smn_alert costs an application, vs ``import logging.handlers``.

Each import is timed inside a fresh interpreter (``time.perf_counter`` around the import statement), with
bytecode cached (a warm-up run fills the cache), the two kinds of interpreter interleaved, many runs.
``import smn_alert`` must not import requests, and ``from smn_alert import SMNHandler`` (which loads the
pipeline lazily) neither.
Targets: ``import smn_alert`` and ``from smn_alert import SMNHandler`` (what ``dictConfig`` pays), medians
<= 1.0x ``import logging.handlers``.
"""

from __future__ import annotations

import random

from _common import Row, median, ms, run_json, times, verdict

TITLE = "6. import time"
TARGET = 1.0
#: Runs of each interpreter per mode.
SIZES = {"full": 30, "quick": 10, "smoke": 2}

SMN = """
import json, sys, time
start = time.perf_counter()
import smn_alert
mid = time.perf_counter()
plain = "requests" in sys.modules
from smn_alert import SMNHandler
end = time.perf_counter()
print(json.dumps({"package": mid - start, "handler": end - mid, "requests_after_import": plain,
                  "requests_after_handler": "requests" in sys.modules, "logging": "logging" in sys.modules}))
"""
STDLIB = """
import json, time
start = time.perf_counter()
import logging.handlers
print(json.dumps({"stdlib": time.perf_counter() - start}))
"""


def run(mode: str) -> list[Row]:
    runs = SIZES[mode]
    results: dict[str, list[dict[str, float]]] = {"smn": [], "stdlib": []}
    order, rng = list(results), random.Random(11)
    for code in (SMN, STDLIB):  # off the record: fill the bytecode cache
        run_json(["-c", code], timeout=60)
    for _ in range(runs):
        rng.shuffle(order)
        for kind in order:
            results[kind].append(run_json(["-c", SMN if kind == "smn" else STDLIB], timeout=60))
    package = median([r["package"] for r in results["smn"]])
    handler = median([r["package"] + r["handler"] for r in results["smn"]])
    stdlib = median([r["stdlib"] for r in results["stdlib"]])
    clean = not any(r["requests_after_import"] or r["requests_after_handler"] for r in results["smn"])
    return [
        Row("import.smn_alert", "import smn_alert", ms(package), f"logging.handlers {ms(stdlib)}",
            times(package / stdlib), f"<= {TARGET:.1f}x", verdict(package / stdlib <= TARGET),
            f"median of {runs} fresh interpreters each"),
        Row("import.SMNHandler", "+ from smn_alert import SMNHandler", ms(handler),
            f"logging.handlers {ms(stdlib)}", times(handler / stdlib), f"<= {TARGET:.1f}x",
            verdict(handler / stdlib <= TARGET),
            "what dictConfig pays: import smn_alert, then the handler's module; not requests"),
        Row("import.requests", "requests imported?", "no" if clean else "yes", "", "", "no",
            verdict(clean), "after import smn_alert and after from smn_alert import SMNHandler"),
    ]  # fmt: skip
