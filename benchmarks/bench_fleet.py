"""Benchmark 9: processes paging the same people share one incident (``shared_state``, issue 11).

- ``fleet.round_trips.sqlite`` / ``.redis``: store round trips per process per second in steady state: a few
  forked processes log errors of two kinds without pause while the fleet's window is open; each reads its
  ``Fleet.round_trips`` after a warm-up and at the end. Target <= 2 in every process.
- ``fleet.emit.sqlite`` / ``.redis``: ``logger.error`` on the application thread with each store, as a ratio
  to ``shared_state="process"``, timed in interleaved batches in one process (the emit rig). Target <= 1.15x.
- ``fleet.sim200``: 200 forked processes on one SQLite file page through one FakeSMNServer; each logs K errors
  of 3 kinds over a few seconds, then closes its handler and exits (exits staggered). Targets: exactly one
  first page; the SMS count every alert logged, exactly; no digest sent twice while every process lives.

The forked fleets run in a fresh interpreter (``bench_fleet.py --child trips|sim ...``) that has built no
handler before it forks and runs the FakeSMNServer; it kills (by pid) any worker past its deadline.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import logging
import math
import os
import random
import re
import select
import signal
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Union

from _common import HERE, Row, attached, median, quartiles, run_json, secs, smn_settings, times, us, verdict
from _rig import Rig, error_batch, per_call, spread
from bench_flood import counted_in

TITLE = "9. fleet: processes sharing one incident (SQLite, Redis)"
TRIPS_TARGET = 2.0
EMIT_TARGET = 1.15
#: (rounds per store, processes, seconds logging, seconds of warm-up not measured) per mode.
TRIPS = {"full": (2, 4, 12.0, 2.0), "quick": (1, 4, 6.0, 2.0), "smoke": (1, 2, 2.5, 1.0)}
#: (rounds, calls per batch) for ``logger.error`` with each store.
EMIT = {"full": (150, 1000), "quick": (50, 1000), "smoke": (3, 50)}
#: (processes, errors each, seconds logging) for the simulation.
SIM = {"full": (200, 30, 3.0), "quick": (100, 20, 2.5), "smoke": (6, 6, 1.0)}
#: The simulation's folding window: short, so digests are claimed while every process lives.
SIM_WINDOW = 1.0
#: Seconds between the exits of two workers (20 steps, then again).
LEAVE_STEP = 0.05
#: Kinds the simulation logs (logger, template, args), one after another in each process.
KINDS = (
    ("shop.db", "query on %s timed out", ("orders",)),
    ("shop.http", "upstream %s answered %d", ("inventory", 503)),
    ("shop.jobs", "job %s failed: retry limit reached", ("email",)),
)
#: What a worker imports when it builds its handler: imported before the fork (as a preloading server
#: would), so that 200 workers do not each import it; nothing is built before the fork.
PRELOAD = (
    "requests",
    "smn_alert._handler",
    "smn_alert._build",
    "smn_alert._store_sqlite",
    "smn_alert._sharing",
)
_DIGEST = re.compile(r"^[A-Z]+ x[\d,]+")  # a digest's head: "ERROR x1,234 in 2 s from 9 processes: ..."
_START = struct.Struct("d")  # the start time, as the parent gives it to each worker
_FROM = re.compile(r" from ([\d,]+) processes")
Store = Union[str, Exception]  # a shared_state URL, or why there is none
Go = Callable[[], float]  # a worker says it is ready and waits for the start; returns the start (time.time)


def run(mode: str) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="smn_alert_bench_fleet_") as tmp, _redis(Path(tmp)) as redis:
        stores: dict[str, Store] = {"sqlite": f"sqlite:///{tmp}/shared-state.db", "redis": redis}
        rows = _trips_rows(mode, stores)
        rows += _emit_rows(mode, stores)
        rows += _sim_rows(mode, f"sqlite:///{tmp}/sim.db")
    return rows


@contextmanager
def _redis(folder: Path) -> Iterator[Store]:
    """A Redis server on a free port (the tests' ``RedisServer``), or the reason there is none."""
    try:
        import redis  # noqa: F401  (the optional extra the store needs)

        spec = importlib.util.spec_from_file_location(
            "_redis_server", HERE.parent / "tests" / "redis_server.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        server = module.RedisServer(folder).start()
    except Exception as error:
        yield error
        return
    try:
        yield str(server.url)
    finally:
        server.stop()


def _missing(bench: str, store: Store) -> Row:
    return Row(bench, "no Redis", "-", result="ERROR", note=f"{type(store).__name__}: {store}"[:300])


# --- round trips ----------------------------------------------------------------------------------------
def _trips_rows(mode: str, stores: dict[str, Store]) -> list[Row]:
    rounds, procs, seconds, warm = TRIPS[mode]
    rates: dict[str, list[float]] = {name: [] for name in stores}
    errors: dict[str, list[str]] = {name: [] for name in stores}
    order, rng = list(stores), random.Random(9)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            if isinstance(stores[name], str):
                args = ["trips", str(stores[name]), str(procs), str(seconds), str(warm)]
                found = run_json([str(HERE / "bench_fleet.py"), "--child", *args], timeout=seconds + 120)
                rates[name] += found["rates"]
                errors[name] += found["errors"]
    return [
        _trips_row(name, store, rates[name], errors[name], procs, rounds) for name, store in stores.items()
    ]


def _trips_row(
    name: str, store: Store, rates: list[float], errors: list[str], procs: int, rounds: int
) -> Row:
    bench = f"fleet.round_trips.{name}"
    if not isinstance(store, str):
        return _missing(bench, store)
    low, high = quartiles(rates)
    note = (
        f"{procs} processes x {rounds} round(s), errors of 2 kinds logged without pause; per process: median "
        f"{median(rates):.2f} [p25-p75 {low:.2f}-{high:.2f}], max {max(rates, default=float('nan')):.2f}"
    )
    if errors:
        note += f"; {len(errors)} worker(s) failed: {errors[0][:120]}"
    # The median process, to 2 decimals: a window of whole seconds holds one sync more or less than another.
    ok = bool(rates) and not errors and round(median(rates), 2) <= TRIPS_TARGET
    return Row(bench, "store round trips per process per s", f"{median(rates):.2f}", "", "",
               f"<= {TRIPS_TARGET:.0f}", verdict(ok), note, {"rates": rates})  # fmt: skip


def trips_child(url: str, procs: int, seconds: float, warm: float) -> dict[str, Any]:
    """A fleet of ``procs`` forked processes logging without pause; each one's round trips per second."""
    from smn_alert.testing import FakeSMNServer

    _preload()
    with FakeSMNServer() as server, tempfile.TemporaryDirectory() as tmp:
        settings = smn_settings(server, shared_state=url, prefix=f"trips-{uuid.uuid4().hex[:8]}")
        work = lambda i, go: _trips_worker(settings, go, seconds, warm)  # noqa: E731
        results, _, _ = fork_all(procs, work, Path(tmp), seconds + 60)
    return {
        "rates": [r["rate"] for r in results if "rate" in r],
        "errors": [r["error"] for r in results if "error" in r],
    }


def _trips_worker(settings: dict[str, Any], go: Go, seconds: float, warm: float) -> dict[str, Any]:
    from smn_alert import SMNHandler

    handler = SMNHandler(**settings)
    fleet = handler._dispatcher._sharing.fleet  # type: ignore[union-attr]  # what the benchmark reads
    loggers = [_logger(name, handler) for name in ("shop.db", "shop.http")]
    start = go()
    marks: list[tuple[float, int]] = []
    n = 0
    while time.time() < start + seconds:
        loggers[n % 2].error("request %s failed", "checkout")
        n += 1
        if not marks and time.time() >= start + warm:
            marks.append((time.monotonic(), fleet.round_trips))
        time.sleep(0.002)
    marks.append((time.monotonic(), fleet.round_trips))
    handler.close()
    (t0, r0), (t1, r1) = marks[0], marks[-1]
    return {"rate": (r1 - r0) / (t1 - t0), "logged": n}


# --- logger.error with each store -----------------------------------------------------------------------
def _emit_rows(mode: str, stores: dict[str, Store]) -> list[Row]:
    from smn_alert import SMNHandler
    from smn_alert.testing import FakeSMNServer

    rounds, calls = EMIT[mode]
    urls = {"process": "process", **{name: url for name, url in stores.items() if isinstance(url, str)}}
    with FakeSMNServer() as server, ExitStack() as stack:
        loggers: dict[str, logging.Logger] = {}
        for name, url in urls.items():
            prefix = f"emit-{name}-{uuid.uuid4().hex[:6]}"
            handler = SMNHandler(**smn_settings(server, shared_state=url, budget=1000, prefix=prefix))
            stack.callback(handler.close)
            loggers[name] = stack.enter_context(attached(f"bench.fleet.{name}", handler))
            loggers[name].error("warm-up: start the worker and send the first page")
        server.wait_for_messages(len(urls), timeout=10.0)
        pagers = [logger.handlers[0] for logger in loggers.values()]
        values = per_call(Rig(loggers, pagers, None).measure(error_batch(calls), rounds), calls)
    labels = {name: name for name in values}
    return [_emit_row(name, store, values, labels, rounds, calls) for name, store in stores.items()]


def _emit_row(
    name: str, store: Store, values: dict[str, list[float]], labels: dict[str, str], rounds: int, calls: int
) -> Row:
    bench = f"fleet.emit.{name}"
    if not isinstance(store, str):
        return _missing(bench, store)
    mine, ref = median(values[name]), median(values["process"])
    note = (
        f"{rounds} samples x {calls} calls each; per call, median [p25-p75] in us: {spread(values, labels)}"
    )
    return Row(bench, f"logger.error, shared_state={name}", us(mine), f"process {us(ref)}", times(mine / ref),
               f"<= {EMIT_TARGET:.2f}x", verdict(mine / ref <= EMIT_TARGET), note,
               {"median": {k: median(v) for k, v in values.items()}})  # fmt: skip


# --- 200 processes ----------------------------------------------------------------------------------------
def _sim_rows(mode: str, url: str) -> list[Row]:
    procs, per, seconds = SIM[mode]
    args = ["sim", url, str(procs), str(per), str(seconds)]
    found = run_json([str(HERE / "bench_fleet.py"), "--child", *args], timeout=seconds + 180)
    logged, counted, firsts = procs * per, found["counted"], found["first_pages"]
    dupes, late_dupes = found["duplicates_live"], found["duplicates_after"]
    what = f"{procs} processes x {per} errors of {len(KINDS)} kinds in {seconds:.0f} s"
    what += f", window {SIM_WINDOW:.0f} s"
    failed = (
        f"; {len(found['errors'])} worker(s) failed: {found['errors'][0][:120]}" if found["errors"] else ""
    )
    said = f"; workers said: {found['said'][0][:160]}" if found["said"] else ""
    return [
        Row("fleet.sim200", "first pages", str(firsts), "", "", "= 1", verdict(firsts == 1 and not failed),
            what + failed, found),
        Row("fleet.sim200.counts", "alerts the SMS count", f"{counted:,}", f"logged {logged:,}", "",
            "= logged", verdict(counted == logged),
            f"{found['sms']} SMS; most processes on one digest: {found['most_from']}; stats() add up in "
            f"{found['ledger_ok']}/{procs} processes; {found['degraded']} fell back to per-process{said}"),
        Row("fleet.sim200.duplicates", "digests sent twice", str(dupes), "", "", "= 0 while all live",
            verdict(dupes == 0), f"after the first exit: {late_dupes} (at least once)"),
        Row("fleet.sim200.wall", "SMS sent / wall time", f"{found['sms']} / {secs(found['wall'])}", "", "",
            "", "INFO", f"fork to last exit; {found['killed']} worker(s) killed at the deadline"),
    ]  # fmt: skip


def sim_child(url: str, procs: int, per: int, seconds: float) -> dict[str, Any]:
    """Fork ``procs`` workers on one SQLite file and one FakeSMNServer; what the phones got, checked."""
    from smn_alert.testing import FakeSMNServer

    _preload()
    with FakeSMNServer() as server, tempfile.TemporaryDirectory() as tmp:
        settings = smn_settings(server, shared_state=url, window=SIM_WINDOW, budget=30)
        began = time.perf_counter()
        work = lambda i, go: _sim_worker(settings, go, i / procs, seconds, per, i % 20 * LEAVE_STEP)  # noqa: E731
        results, killed, start = fork_all(procs, work, Path(tmp), seconds + 120)
        wall = time.perf_counter() - began
        messages = server.messages
    return {**_judge(messages, start + seconds, results, per), "wall": wall, "killed": killed}


def _judge(
    messages: list[Any], first_leave: float, results: list[dict[str, Any]], per: int
) -> dict[str, Any]:
    """First pages, counts, digests sent twice (before and after the first process left) and the ledgers."""
    texts = [m.message for m in messages]
    digests = [(m.received_at < first_leave, m.message) for m in messages if _DIGEST.match(m.message)]
    live = collections.Counter(text for alive, text in digests if alive)
    every = collections.Counter(text for _, text in digests)
    stats = [r["stats"] for r in results if "stats" in r]
    parts = ("sent", "folded", "suppressed", "dropped", "failed", "pending", "handed")
    said = sorted({line for r in results for line in r.get("said", [])})
    return {
        "sms": len(texts),
        "texts": texts,
        "first_pages": len(texts) - len(digests),
        "counted": sum(counted_in(text) for text in texts),
        "duplicates_live": sum(n - 1 for n in live.values()),
        "duplicates_after": sum(n - 1 for n in every.values()) - sum(n - 1 for n in live.values()),
        "most_from": max(
            (int(m.group(1).replace(",", "")) for m in map(_FROM.search, texts) if m), default=1
        ),
        "ledger_ok": sum(s["received"] == per == sum(s[k] for k in parts) for s in stats),
        "degraded": sum(bool(r.get("degraded")) for r in results),
        "errors": [r["error"] for r in results if "error" in r],
        "said": said[:3],
        "times": [r["times"] for r in results if "times" in r],  # built, left, exited: s after the start
    }


def _sim_worker(
    settings: dict[str, Any], go: Go, phase: float, seconds: float, per: int, late: float
) -> dict[str, Any]:
    """Build the handler, wait for the start, log ``per`` errors over ``seconds``, leave ``late`` s after."""
    from smn_alert import SMNHandler

    said = _Said()
    logging.getLogger("smn_alert").addHandler(said)
    handler = SMNHandler(**settings)
    loggers = [(_logger(name, handler), template, args) for name, template, args in KINDS]
    built = time.time()
    start = go()
    for n in range(per):
        _sleep_until(start + (n + phase) * seconds / per)
        logger, template, args = loggers[n % len(loggers)]
        logger.error(template, *args)
    _sleep_until(start + seconds + late)
    degraded = handler._dispatcher._sharing.fleet.degraded  # type: ignore[union-attr]
    closing = time.time()
    handler.close()  # what the interpreter's exit does (smn_alert's atexit hook), then os._exit
    return {
        "stats": handler.stats(),
        "times": [built - start, closing - start, time.time() - start],
        "degraded": degraded or any("per process" in line for line in said.lines),
        "said": said.lines,
    }


class _Said(logging.Handler):
    """Keeps what smn_alert's own logger said in a worker (a fallback to per-process paging, ...)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < 5:
            self.lines.append(record.getMessage()[:300])


# --- forked workers -------------------------------------------------------------------------------------
def fork_all(
    count: int, work: Callable[[int, Go], dict[str, Any]], folder: Path, within: float
) -> tuple[list[dict[str, Any]], int, float]:
    """Run ``work(i, go)`` in ``count`` forked children; return their results, how many were killed, start.

    Each child calls ``go()`` once ready (its handler built): the start (``time.time()``) is set when all are
    ready (or after 60 s), so no worker builds while the others log. Each child writes its result to a JSON
    file and ends with ``os._exit`` (never the parent's atexit hooks or stack); one still running ``within``
    seconds after the start is killed by its pid, and every child is reaped: none is left behind.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids: list[int] = []
    start = math.nan
    try:
        for i in range(count):
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                os.close(go_w)
                _child(i, lambda: _go(ready_w, go_r), work, folder)
            pids.append(pid)
        start = _start(ready_r, go_w, count)
    finally:
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        killed = _reap(pids, (start if math.isfinite(start) else time.time()) + within)
    results = []
    for i in range(count):
        path = folder / f"{i}.json"
        results.append(json.loads(path.read_text()) if path.exists() else {"error": f"worker {i}: no result"})
    return results, killed, start


def _go(ready_w: int, go_r: int) -> float:
    """In a worker: say it is ready, wait for the start and return it."""
    os.write(ready_w, b".")
    start = os.read(go_r, _START.size)
    if len(start) != _START.size:
        raise RuntimeError("the parent went away before the start")
    return float(_START.unpack(start)[0])


def _start(ready_r: int, go_w: int, count: int) -> float:
    """Wait until ``count`` workers are ready (at most 60 s), then give each the start time."""
    ready, give_up = 0, time.monotonic() + 60
    while ready < count and time.monotonic() < give_up:
        if select.select([ready_r], [], [], 0.5)[0]:
            ready += len(os.read(ready_r, count - ready))
    start = time.time() + 0.3
    for _ in range(count):
        os.write(go_w, _START.pack(start))
    return start


def _child(i: int, go: Go, work: Callable[[int, Go], dict[str, Any]], folder: Path) -> None:
    code = 1
    try:
        try:
            result = work(i, go)
            code = 0
        except BaseException as error:
            result = {"error": f"worker {i}: {type(error).__name__}: {error}"}
        (folder / f"{i}.tmp").write_text(json.dumps(result, default=str))
        os.replace(folder / f"{i}.tmp", folder / f"{i}.json")
    finally:
        os._exit(code)


def _reap(pids: list[int], deadline: float) -> int:
    """Wait for every child; kill (SIGKILL, by pid) any running at ``deadline`` (``time.time``); how many."""
    left, killed = set(pids), 0
    while left:
        for pid in list(left):
            if os.waitpid(pid, os.WNOHANG)[0]:
                left.discard(pid)
        if left and time.time() > deadline:
            for pid in left:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            killed, left = len(left), set()
        time.sleep(0.01)
    return killed


def _preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger


def _sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    what, rest = sys.argv[2], sys.argv[3:]
    if what == "trips":
        found = trips_child(rest[0], int(rest[1]), float(rest[2]), float(rest[3]))
    else:
        found = sim_child(rest[0], int(rest[1]), int(rest[2]), float(rest[3]))
    print(json.dumps(found, default=str))
