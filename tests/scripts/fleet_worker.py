"""One worker of a fleet that pages the same people, for ``tests/test_sharing_processes.py``.

Configured as an application would be: an SMNHandler on the root logger whose connection settings and
``shared_state`` come from the environment (SMN_ALERT_*, HUAWEICLOUD_SDK_*), plus ``FLEET_HANDLER``: a JSON
object of the handler's other keyword arguments (window, budget, shutdown_timeout ...). ``FLEET_LEASE``
shortens ``smn_alert._sharing.LEASE`` (the lease of a claimed digest) so a test need not wait 30 s.
smn_alert's own lines ("paging per process ...") go to stderr, where the test reads them.

Roles (``python fleet_worker.py ROLE ...``):

- ``fork N COUNT LINGER OUT``: build the handler, then fork N workers (as gunicorn's preload does); each waits
  for ``FLEET_START`` (wall time), logs COUNT errors of one kind, stays LINGER seconds, closes its handler,
  writes its stats to OUT/<pid>.json and exits; the parent waits for them and exits normally.
- ``burst COUNT LINGER OUT``: the same as one independent process (no fork).
- ``crash``: log one CRITICAL and exit(1) at once (what a crash-looping service does).
- ``serial N ROLE ARGS...``: run ROLE in N processes one after another, each a fresh one forked from this
  interpreter before it built any handler (as a supervisor restarting the service, without paying for N
  interpreter starts); print their exit statuses as a JSON list.
- ``serve``: obey commands, one per line on stdin, answering one JSON line each on stdout (see COMMANDS).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import smn_alert._sharing
from smn_alert import SMNHandler

log = logging.getLogger("app.worker")


def configure() -> SMNHandler:
    """Page ERROR and above of every logger through one SMNHandler on the root logger; return it."""
    if os.environ.get("FLEET_LEASE"):
        smn_alert._sharing.LEASE = float(os.environ["FLEET_LEASE"])
    handler = SMNHandler(**json.loads(os.environ.get("FLEET_HANDLER", "{}")))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(f"[{os.getpid()}] %(name)s %(levelname)s: %(message)s"))
    logging.getLogger("smn_alert").addHandler(console)
    return handler


def report(handler: SMNHandler) -> dict[str, Any]:
    return {"pid": os.getpid(), "stats": handler.stats(), "fleet": handler.fleet_status()}


def burst(handler: SMNHandler, count: int, linger: float, out: str) -> None:
    """Wait for FLEET_START, log ``count`` errors, stay ``linger`` s, close, write the stats to ``out``."""
    time.sleep(max(0.0, float(os.environ.get("FLEET_START", "0")) - time.time()))
    for number in range(count):
        log.error("payment gateway timed out (attempt %d)", number)
    time.sleep(linger)
    handler.close()
    (Path(out) / f"{os.getpid()}.json").write_text(json.dumps(report(handler)))


def fork(workers: str, count: str, linger: str, out: str) -> None:
    handler = configure()
    children = []
    for _ in range(int(workers)):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                burst(handler, int(count), float(linger), out)
                code = 0
            finally:
                os._exit(code)  # what a worker does after it closed its handler (as at exit)
        children.append(pid)
    failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
    sys.exit(1 if failed else 0)


def timed_errors(count: int, message: str) -> dict[str, Any]:
    """Log ``count`` errors; return the median and worst cost of one ``log.error`` call in microseconds."""
    costs = []
    for number in range(count):
        started = time.perf_counter()
        log.error(message, *((number,) if "%d" in message else ()))
        costs.append(time.perf_counter() - started)
    return {"median_us": statistics.median(costs) * 1e6, "max_us": max(costs) * 1e6}


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def pushed(handler: SMNHandler, handed: int) -> Callable[[], bool]:
    """True once ``handed`` alerts were handed to the fleet and all of them reached the store."""

    def done() -> bool:
        fleet = handler.fleet_status() or {}
        stats: dict[str, Any] = handler.stats()
        return bool(stats["handed"] >= handed and fleet.get("unsent", 1) == 0)

    return done


def paused(handler: SMNHandler) -> bool:
    return (handler.fleet_status() or {}).get("circuit") is not None


def critical(words: tuple[str, ...]) -> dict[str, Any]:
    log.critical(" ".join(words))
    return {}


def sharing(handler: SMNHandler) -> bool:
    return (handler.fleet_status() or {}).get("degraded") is False


# serve's commands: name -> (handler, arguments) -> answer.
COMMANDS: dict[str, Callable[..., Any]] = {
    # log N MESSAGE: N errors with MESSAGE (a %d gets the number); the cost of each call.
    "log": lambda h, n, *words: timed_errors(int(n), " ".join(words)),
    # critical MESSAGE: one CRITICAL.
    "critical": lambda h, *words: critical(words),
    # pushed N TIMEOUT: wait until N alerts were handed to the fleet and are all in the store.
    "pushed": lambda h, n, t: {"ok": wait_for(pushed(h, int(n)), float(t))},
    # sharing TIMEOUT: wait until the store answers (not degraded).
    "sharing": lambda h, t: {"ok": wait_for(lambda: sharing(h), float(t))},
    # degraded TIMEOUT: wait until this process pages alone (the store failed).
    "degraded": lambda h, t: {"ok": wait_for(lambda: not sharing(h), float(t))},
    # paused TIMEOUT: wait until the fleet's circuit is seen open here.
    "paused": lambda h, t: {"ok": wait_for(lambda: paused(h), float(t))},
    "status": lambda h: {},
}


def serve() -> None:
    """Answer commands from stdin until EOF or ``exit CODE`` (a plain exit: atexit closes the handler).

    The last line, printed at exit after smn_alert closed the handler, is the final report.
    """
    made: list[SMNHandler] = []
    atexit.register(lambda: print(json.dumps({"exited": True, **report(made[0])}), flush=True))
    handler = configure()
    made.append(handler)
    print(json.dumps(report(handler)), flush=True)
    for line in sys.stdin:
        name, *args = line.split()
        if name == "exit":
            sys.exit(int(args[0]))
        answer = COMMANDS[name](handler, *args)
        print(json.dumps({**answer, **report(handler)}), flush=True)


def crash() -> None:
    configure()
    log.critical("worker crashed on start: config file missing")
    sys.exit(1)


def serial(times: str, role: str, *rest: str) -> None:
    import requests  # noqa: F401  (imported once here, as a restarted interpreter would have it anyway)

    statuses = []
    for _ in range(int(times)):
        pid = os.fork()
        if pid == 0:
            main(role, *rest)
            sys.exit(0)  # a normal exit: atexit closes the handler
        statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    print(json.dumps(statuses), flush=True)


def main(role: str, *rest: str) -> None:
    if role == "serial":
        serial(*rest)
    elif role == "fork":
        fork(*rest)
    elif role == "burst":
        burst(configure(), int(rest[0]), float(rest[1]), rest[2])
    elif role == "serve":
        serve()
    else:
        crash()


if __name__ == "__main__":
    main(*sys.argv[1:])
