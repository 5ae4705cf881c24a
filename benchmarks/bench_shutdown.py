"""Benchmark 5: how long a process takes to exit with an alert pending, and whether that alert arrives.

A script configures an ``SMNHandler`` (``shutdown_timeout=2``), logs one error and ends without closing
anything: interpreter exit must page within the timeout. Three scripts, interleaved, each timed from
spawn to exit:
- baseline: the same script without the error (interpreter start-up and imports);
- hung: the error, with a server that does not answer for 60 s: target exit <= baseline + timeout + 0.5 s;
- healthy: the error, with a server that answers: the alert must be delivered.
"""

from __future__ import annotations

import json
import random
from typing import Any

from _common import Row, median, run_python, secs, smn_settings, verdict

TITLE = "5. interpreter exit with a pending alert"
#: Seconds of grace over ``shutdown_timeout`` the target allows.
GRACE = 0.5
#: (rounds, shutdown_timeout) per mode.
SIZES = {"full": (5, 2.0), "quick": (2, 2.0), "smoke": (1, 0.3)}

SCRIPT = """
import json, logging, sys
from smn_alert import SMNHandler
config = json.loads(sys.argv[1])
logger = logging.getLogger("app")
logger.addHandler(SMNHandler(**config["settings"]))
if config["alert"]:
    logger.error("payment service down: %s", "connection reset")
"""


def _exit_time(server: Any, timeout: float, alert: bool) -> float:
    config = {"settings": smn_settings(server, shutdown_timeout=timeout), "alert": alert}
    done, elapsed = run_python(["-c", SCRIPT, json.dumps(config)], timeout=timeout + 60)
    if done.returncode != 0:
        raise RuntimeError(f"the script exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return elapsed


def run(mode: str) -> list[Row]:
    from smn_alert.testing import FakeSMNServer

    rounds, timeout = SIZES[mode]
    times: dict[str, list[float]] = {"baseline": [], "hung": [], "healthy": []}
    with FakeSMNServer() as hung, FakeSMNServer() as healthy:
        hung.delay(60.0)
        servers = {"baseline": healthy, "hung": hung, "healthy": healthy}
        order, rng = list(times), random.Random(7)
        for _ in range(rounds):
            rng.shuffle(order)
            for kind in order:
                times[kind].append(_exit_time(servers[kind], timeout, alert=kind != "baseline"))
        delivered = [m for m in healthy.messages if "payment service down: connection reset" in m.message]
        tried = len(hung.requests)
    return _rows(times, timeout, len(delivered), rounds, tried)


def _rows(
    times: dict[str, list[float]], timeout: float, delivered: int, rounds: int, tried: int
) -> list[Row]:
    base = median(times["baseline"])
    extra = median(times["hung"]) - base
    worst = max(times["hung"]) - base
    healthy_extra = median(times["healthy"]) - base
    limit = timeout + GRACE
    return [
        Row("shutdown.hung", "exit time over baseline", secs(extra), f"baseline {secs(base)}", "",
            f"<= {secs(limit)}", verdict(extra <= limit),
            f"shutdown_timeout={timeout:g}; worst of {rounds}: {secs(worst)}; the hung server saw {tried} "
            "request(s)", {k: v for k, v in times.items()}),
        Row("shutdown.healthy", "alert delivered at exit", f"{delivered}/{rounds}",
            f"exit {secs(healthy_extra)} over baseline", "", "all delivered", verdict(delivered == rounds)),
    ]  # fmt: skip
