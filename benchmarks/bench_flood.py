"""Benchmark 3: a flood of errors while SMN takes 2 s per request, into SMNHandler and into QueueHandler.

Each flood runs in a fresh subprocess (so memory is measured cleanly), SMN and QueueHandler rounds
interleaved: 8 threads x 25,000 errors of 5 templates on 2 loggers, one template with an exception of
two types. The QueueHandler has a QueueListener draining into a NullHandler, as a user would deploy it.
Targets: application wall time <= 1.2x QueueHandler; peak RSS growth <= 20 MB; SMS within the budget
for the elapsed time, each <= 490 characters, and the counts the SMS texts show adding up to every error;
no alert of a kind already seen loses its text to the full buffer (``dropped``: only counted). The flood's
12 kinds (4 templates x 2 loggers, and the exception template's 2 types x 2 loggers) all appear in each
thread's first 20 errors, long before the buffer of 10,000 can fill, so every dropped alert is of a kind
already seen.
Run as ``bench_flood.py --child smn|queue THREADS PER_THREAD DELAY`` it is one flood (used by ``run``).
"""

from __future__ import annotations

import gc
import json
import logging
import logging.handlers
import math
import queue
import random
import re
import sys
import threading
import time
from typing import Any, Callable

from _common import (
    HERE,
    MAX_SMS,
    Row,
    RssSampler,
    median,
    mib,
    proc_status_kib,
    run_json,
    secs,
    smn_settings,
    times,
    verdict,
)

TITLE = "3. flood: 8 threads x 25,000 errors, SMN answering in 2 s"
WALL_TARGET = 1.2
MEMORY_TARGET_KIB = 20 * 1024
#: (rounds per handler, threads, errors per thread, server delay in seconds) per mode.
SIZES = {"full": (3, 8, 25_000, 2.0), "quick": (1, 8, 25_000, 2.0), "smoke": (1, 2, 300, 0.2)}

_LEVEL = r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL|Level \d+)"
# How each line of a page counts alerts (smn_alert/_compose.py): a kind line "ERROR x1,234 ..." counts
# 1,234, one without "x" counts 1; "+N more alerts of K kinds", "N alerts of K kinds" and "N alerts" count N;
# "N of these held back", "N of these only counted" (buffer full) and "N undelivered" restate alerts
# counted elsewhere.
_COUNTED = [
    re.compile(r"^\+([\d,]+) more alerts? of [\d,]+ kinds?$"),
    re.compile(r"^([\d,]+) alerts? of [\d,]+ kinds?$"),
    re.compile(r"^([\d,]+) alerts?$"),
    re.compile(rf"^{_LEVEL} x([\d,]+)\b"),
]
_RESTATED = re.compile(r"^[\d,]+ (?:of these held back|(?:of these )?only counted|undelivered)")
_ONLY_COUNTED = re.compile(r"^([\d,]+) (?:of these )?only counted")
_SINGLE = re.compile(rf"^{_LEVEL} ")


def only_counted_in(text: str) -> int:
    """How many alerts an SMS text says met a full buffer (``N of these only counted (buffer full)``)."""
    found = (_ONLY_COUNTED.match(line) for line in text.split("\n"))
    return sum(int(m.group(1).replace(",", "")) for m in found if m)


def counted_in(text: str) -> int:
    """How many alerts an SMS text accounts for; ValueError on a line that fits no known shape."""
    total = 0
    for line in text.split("\n"):
        found = next((m for m in (p.match(line) for p in _COUNTED) if m), None)
        if found is not None:
            total += int(found.group(1).replace(",", ""))
        elif _SINGLE.match(line):
            total += 1
        elif not _RESTATED.match(line):
            raise ValueError(f"a line of an SMS fits no known shape: {line[:80]!r}")
    return total


# --- the child: one flood --------------------------------------------------------------------------------
def _fail(i: int) -> None:
    if i % 2:
        raise KeyError(f"order-{i}")
    raise ValueError(f"bad amount in order {i}")


def _flood(loggers: list[logging.Logger], per_thread: int, thread_no: int, go: threading.Barrier) -> None:
    db, api = loggers
    go.wait()
    for i in range(per_thread):
        log = db if i & 1 else api
        kind = i % 5
        if kind == 0:
            log.error("db timeout after %s s", 30)
        elif kind == 1:
            log.error("payment %s failed for user %s", i, thread_no)
        elif kind == 2:
            log.error("cache miss storm: %d keys", i)
        elif kind == 3:
            log.error("upstream %s answered %d", "billing", 502)
        else:
            try:
                _fail(i // 10)  # both exception types on both loggers
            except (KeyError, ValueError):
                log.exception("request %s crashed", i)


def _run_flood(loggers: list[logging.Logger], threads: int, per_thread: int) -> float:
    """Application wall time: from releasing the threads until the last one is done."""
    go = threading.Barrier(threads + 1)
    workers = [
        threading.Thread(target=_flood, args=(loggers, per_thread, n, go), name=f"app-{n}")
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    go.wait()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def _handler(kind: str, server: Any) -> tuple[logging.Handler, Callable[[], dict[str, Any]]]:
    """The handler under test and what finishes it (close, then report)."""
    if kind == "queue":
        q: queue.Queue[Any] = queue.Queue()
        listener = logging.handlers.QueueListener(q, logging.NullHandler())
        listener.start()

        def stop_listener() -> dict[str, Any]:
            listener.stop()
            return {}

        return logging.handlers.QueueHandler(q), stop_listener
    from smn_alert import SMNHandler

    smn = SMNHandler(**smn_settings(server, shutdown_timeout=30))

    def close_smn() -> dict[str, Any]:
        smn.close()
        budget = {"budget": smn.settings.budget, "budget_period": smn.settings.budget_period}
        return {"stats": smn.stats(), "texts": [m.message for m in server.messages], **budget}

    return smn, close_smn


def child(kind: str, threads: int, per_thread: int, delay: float) -> dict[str, Any]:
    from smn_alert.testing import FakeSMNServer

    with FakeSMNServer() as server:
        server.delay(delay)
        began = time.time()
        handler, finish = _handler(kind, server)
        loggers = [logging.getLogger("app.db"), logging.getLogger("app.api")]
        for logger in loggers:
            logger.addHandler(handler)
            logger.propagate = False
        gc.collect()
        before = proc_status_kib("VmRSS") or 0
        with RssSampler() as rss:
            wall = _run_flood(loggers, threads, per_thread)
            start = time.perf_counter()
            report = finish()
            close_time = time.perf_counter() - start
        report.update(wall=wall, close=close_time, growth_kib=rss.peak() - before, rss_before_kib=before)
        report["requests_imported"] = "requests" in sys.modules
        report["request_times"] = [round(r.received_at - began, 3) for r in server.requests]
        return report


# --- the parent: interleaved rounds and verdicts ----------------------------------------------------------
def _sms_check(report: dict[str, Any], total: int) -> dict[str, Any]:
    """What one SMN flood paged: SMS within budget and length, and counts that add up to ``total``."""
    texts, stats = report["texts"], report["stats"]
    elapsed = report["wall"] + report["close"]
    # The budget refills over the elapsed time; the last page at close goes out even when it is spent.
    allowed = math.floor(report["budget"] * (1 + elapsed / report["budget_period"])) + 1
    longest = max((len(t) for t in texts), default=0)
    try:
        shown, why = sum(counted_in(t) for t in texts), ""
    except ValueError as error:
        shown, why = -1, f" ({error})"
    ledger = ("sent", "folded", "suppressed", "dropped", "failed", "pending")
    return {
        "sms_ok": 0 < len(texts) <= allowed and longest <= MAX_SMS,
        "counts_ok": stats["received"] == total == sum(stats[k] for k in ledger) and shown == total,
        "shown": shown,
        "sms_note": f"{len(texts)} SMS (allowed {allowed}), longest {longest} chars{why}",
        "stats_note": "stats(): " + ", ".join(f"{k} {stats[k]:,}" for k in ("received", *ledger)),
        "dropped": stats["dropped"],
        "only_counted": sum(only_counted_in(t) for t in texts),
    }


def run(mode: str) -> list[Row]:
    rounds, threads, per_thread, delay = SIZES[mode]
    args = [str(HERE / "bench_flood.py"), "--child", "", str(threads), str(per_thread), str(delay)]
    results: dict[str, list[dict[str, Any]]] = {"smn": [], "queue": []}
    order, rng = ["smn", "queue"], random.Random(3)
    for _ in range(rounds):
        rng.shuffle(order)
        for kind in order:
            args[2] = kind
            results[kind].append(run_json(args, timeout=300))
    return _rows(results, threads * per_thread)


def _rows(results: dict[str, list[dict[str, Any]]], total: int) -> list[Row]:
    smn, ref = results["smn"], results["queue"]
    wall_smn, wall_ref = median([r["wall"] for r in smn]), median([r["wall"] for r in ref])
    growth = max(r["growth_kib"] for r in smn)
    checks = [_sms_check(r, total) for r in smn]
    firsts = [r["request_times"][0] for r in smn if r["request_times"]]
    close_note = f"SMN close() took {secs(median([r['close'] for r in smn]))} (the last page waits for SMN)"
    return [
        Row("flood.wall", "application wall time", secs(wall_smn), f"QueueHandler {secs(wall_ref)}",
            times(wall_smn / wall_ref), f"<= {WALL_TARGET:.1f}x", verdict(wall_smn / wall_ref <= WALL_TARGET),
            f"{len(smn)} rounds each, {total:,} errors per flood; {close_note}",
            {"smn": [r["wall"] for r in smn], "queue": [r["wall"] for r in ref]}),
        Row("flood.memory", "peak RSS growth (worst)", mib(growth),
            f"QueueHandler {mib(max(r['growth_kib'] for r in ref))}", "", "<= 20 MB",
            verdict(growth <= MEMORY_TARGET_KIB), "the flood, after the handler was built",
            {"smn_kib": [r["growth_kib"] for r in smn], "queue_kib": [r["growth_kib"] for r in ref]}),
        Row("flood.sms", "SMS sent", str(len(smn[-1]["texts"])), "", "", "budget, <= 490 chars",
            verdict(all(c["sms_ok"] for c in checks)), checks[-1]["sms_note"], {"texts": smn[-1]["texts"]}),
        Row("flood.counts", "alerts the SMS texts count", f"{checks[-1]['shown']:,}", "", "", f"= {total:,}",
            verdict(all(c["counts_ok"] for c in checks)), checks[-1]["stats_note"],
            {"stats": smn[-1]["stats"]}),
        _dropped_row(checks, total),
        Row("flood.first_sms", "first SMS reached SMN", secs(median(firsts)), "", "", "", "INFO",
            "after the flood began (median); the worker starts and connects under load",
            {"first_request": firsts}),
    ]  # fmt: skip


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _, _, kind_, threads_, per_thread_, delay_ = sys.argv
    print(json.dumps(child(kind_, int(threads_), int(per_thread_), float(delay_))))


def _dropped_row(checks: list[dict[str, Any]], total: int) -> Row:
    """Alerts of kinds already seen that lost their text to the full buffer, worst of the rounds."""
    worst = max(checks, key=lambda c: int(c["dropped"]))
    dropped, said = int(worst["dropped"]), int(worst["only_counted"])
    note = (
        f"stats() dropped, worst of {len(checks)}: {dropped / total:.1%} of {total:,} alerts; the SMS texts "
        f"say {said:,} only counted; all {len(checks)} rounds: {', '.join(str(c['dropped']) for c in checks)}"
    )
    return Row("flood.dropped", "known kinds only counted (buffer full)", f"{dropped:,}", "", "", "= 0",
               verdict(dropped == 0), note, {"dropped": [c["dropped"] for c in checks],
                                            "only_counted": [c["only_counted"] for c in checks]})  # fmt: skip
