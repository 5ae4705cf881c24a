"""Log errors in a loop while a 1 ms interval timer's signal handler logs errors too.

A signal handler runs on the main thread between two bytecodes, possibly in the middle of the handler's
own hand-over: that must never deadlock. Usage: signal_storm.py [seconds]. Prints one JSON line (stats).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time

from pager_setup import configure

handler = configure()
log = logging.getLogger("app.storm")
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
# Switch threads often, so that the worker wakes (and the hand-over wakes it) thousands of times a second.
sys.setswitchinterval(1e-5)
interrupts = [0]


def on_alarm(signum: int, frame: object) -> None:
    interrupts[0] += 1
    log.error("error logged by a signal handler")


signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
logged, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    log.error("error logged by the main loop")
    logged += 1
signal.setitimer(signal.ITIMER_REAL, 0)
print(json.dumps({"logged": logged, "interrupts": interrupts[0], "stats": handler.stats()}), flush=True)
