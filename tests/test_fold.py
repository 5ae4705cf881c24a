"""Repeats counted on the calling thread: exact counts, fresh samples, escalation, races at a window's end."""

from __future__ import annotations

import itertools
import json
import logging
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from smn_alert import SMNHandler, SMNProcessor
from smn_alert._alert import Alert, quick_event_fingerprint, quick_fingerprint
from smn_alert._compose import PageContext
from smn_alert._fold import GRACE, Fold, count_value
from smn_alert._pager import Pager
from smn_alert._ratelimit import CircuitBreaker, RetryPolicy, TokenBucket
from smn_alert.testing import FakeClock, RecordingSender

SIGN = "6be340e91e5241e4b5d85837e6709104"
NUMBERS = ["+8613800000001"]
PARTS = ("sent", "folded", "suppressed", "dropped", "failed", "pending")


def adds_up(stats: dict[str, Any]) -> bool:
    return bool(stats["received"] == sum(stats[part] for part in PARTS))


@pytest.fixture
def paging() -> Any:
    made: list[tuple[SMNHandler, logging.Logger]] = []

    def make(name: str = "app.fold") -> tuple[SMNHandler, logging.Logger, RecordingSender]:
        sender = RecordingSender()
        handler = SMNHandler(NUMBERS, sign_id=SIGN, sender=sender, clock=FakeClock())
        logger = logging.getLogger(f"{name}.{len(made)}")
        logger.addHandler(handler)
        logger.propagate = False
        made.append((handler, logger))
        return handler, logger, sender

    yield make
    for handler, logger in made:
        logger.removeHandler(handler)
        handler.close()


# --- the counter read without advancing it ----------------------------------------------------------------
@pytest.mark.parametrize("steps", [0, 1, 7, 12345])
def test_count_value_reads_without_advancing(steps: int) -> None:
    counter = itertools.count()
    for _ in range(steps):
        next(counter)
    assert count_value(counter) == steps == count_value(counter)
    assert next(counter) == steps


# --- the cheap fingerprint is the snapshot's ---------------------------------------------------------------
def _raise(kind: type[BaseException]) -> Any:
    try:
        raise kind("boom")
    except BaseException as error:
        return error


def _triple(error: BaseException) -> Any:
    return (type(error), error, error.__traceback__)


def _record(msg: Any, args: Any = (), exc_info: Any = None, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("app.shape", level, __file__, 1, msg, args, exc_info)


SHAPES = {
    "plain": lambda: _record("db timeout"),
    "args": lambda: _record("user %s failed %d", ("bob", 3)),
    "bad args": lambda: _record("user %s failed %d", ("bob",)),
    "long": lambda: _record("x" * 5000),
    "custom level": lambda: _record("odd", level=33),
    "exception tuple": lambda: _record("crash", exc_info=_triple(_raise(ValueError))),
    "exception instance": lambda: _record("crash", exc_info=_raise(KeyError)),
    "no exception": lambda: _record("crash", exc_info=(None, None, None)),
    "not a str": lambda: _record(ValueError("as msg")),
    "a dict": lambda: _record({"event": "structlog", "user": "bob"}),
    "str subclass": lambda: _record(type("S", (str,), {})("sub")),
}  # fmt: skip


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_quick_fingerprint_is_the_snapshots_or_none(shape: str) -> None:
    record = SHAPES[shape]()
    quick = quick_fingerprint(record)
    assert quick is None or quick == Alert.from_record(record).fingerprint
    if shape in (
        "plain",
        "args",
        "bad args",
        "long",
        "custom level",
        "exception tuple",
        "exception instance",
    ):
        assert quick is not None


def test_quick_fingerprint_of_the_exception_being_handled() -> None:
    try:
        raise OSError("disk")
    except OSError:
        record = _record("io", exc_info=True)
        assert quick_fingerprint(record) == Alert.from_record(record).fingerprint


@pytest.mark.parametrize(
    "event",
    [
        {"event": "db timeout", "user": "bob"},
        {"event": "x" * 3000},
        {"event": "crash", "exc_info": _raise(ValueError)},
        {"event": "rendered", "exception": "Traceback...\nValueError: x"},
        {"event": 42},
        {},
    ],
)
def test_quick_event_fingerprint_is_the_snapshots_or_none(event: dict[str, Any]) -> None:
    quick = quick_event_fingerprint(event, "app", logging.ERROR)
    assert quick is None or quick == Alert.from_event_dict(event, "app", logging.ERROR, "ERROR").fingerprint


# --- through the handler -----------------------------------------------------------------------------------
def test_repeats_counted_on_the_calling_thread_are_dated_by_their_records(paging: Any) -> None:
    """A digest's span comes from the records' own times (a replayed incident), not when they were read."""
    handler, logger, sender = paging()
    base = 1_700_000_000.0

    def log_at(offset: float) -> None:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "db timeout", (), None)
        record.created = base + offset
        logger.handle(record)

    log_at(0)
    sender.wait_for(1)
    assert len(handler._dispatcher.fold) == 1
    for second in range(1, 41):
        log_at(second)  # counted on the calling thread, 40 s of record time in a moment of real time
    assert handler.flush(5.0)
    digest = sender.wait_for(2)[1]
    assert digest.startswith("ERROR x40 in 39 s"), digest  # from the first repeat (1 s) to the last (40 s)


def test_threads_counting_repeats_are_counted_exactly(paging: Any) -> None:
    """N threads x M repeats during an open window: the digest says N*M and the counters add up."""
    handler, logger, sender = paging()
    logger.error("db timeout")
    sender.wait_for(1)
    assert len(handler._dispatcher.fold) == 1  # the kind paged is counted on the calling thread now
    threads, repeats = 8, 2000

    def repeat() -> None:
        for _ in range(repeats):
            logger.error("db timeout")

    workers = [threading.Thread(target=repeat) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats = handler.stats()
    assert stats["received"] == 1 + threads * repeats and adds_up(stats)
    assert handler.flush(5.0)
    digest = sender.wait_for(2)[1]
    assert digest.startswith(f"ERROR x{threads * repeats:,}"), digest
    stats = handler.stats()
    assert stats["received"] == 1 + threads * repeats and stats["pending"] == 0 and adds_up(stats)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_a_signal_handler_that_logs_a_repeat_is_counted(paging: Any) -> None:
    handler, logger, sender = paging()
    logger.error("db timeout")
    sender.wait_for(1)
    previous = signal.signal(signal.SIGUSR1, lambda *_: logger.error("db timeout"))
    try:
        for _ in range(50):
            logger.error("db timeout")
            signal.raise_signal(signal.SIGUSR1)  # the handler runs between two bytecodes of this thread
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert handler.flush(5.0)
    assert sender.wait_for(2)[1].startswith("ERROR x100"), sender.texts
    assert adds_up(handler.stats())


def test_an_escalation_during_a_window_pages_at_once(paging: Any) -> None:
    handler, logger, sender = paging()
    logger.error("db timeout")
    sender.wait_for(1)
    for _ in range(10):
        logger.error("db timeout")
    logger.critical("database gone")  # worse than what was paged: no flush, no clock advance needed
    second = sender.wait_for(2)[1]
    assert "database gone" in second
    assert adds_up(handler.stats())


def test_a_new_kind_during_a_window_is_folded_with_its_own_text(paging: Any) -> None:
    handler, logger, sender = paging()
    logger.error("db timeout")
    sender.wait_for(1)
    for index in range(30):
        logger.error("cache miss %d", index)
    assert handler.flush(5.0)
    texts = sender.wait_for(2)
    assert len(texts) == 2 and texts[1].startswith("ERROR x30") and "cache miss 0" in texts[1], texts
    assert handler.stats()["received"] == 31


def test_the_processor_counts_repeats_too() -> None:
    sender = RecordingSender()
    processor = SMNProcessor(NUMBERS, sign_id=SIGN, sender=sender, clock=FakeClock())
    try:
        processor(None, "error", {"event": "payment failed", "user": "bob"})
        sender.wait_for(1)
        assert len(processor._dispatcher.fold) == 1
        for _ in range(500):
            processor(None, "error", {"event": "payment failed", "user": "bob"})
        assert processor.flush(5.0)
        assert sender.wait_for(2)[1].startswith("ERROR x500"), sender.texts
        stats = processor.stats()
        assert stats["received"] == 501 and adds_up(stats)
    finally:
        processor.close()


# --- the worker's side, step by step on an injected clock ------------------------------------------------
def _pager(clock: FakeClock) -> Pager:
    bucket = TokenBucket(50, 600.0, clock=clock)
    breaker = CircuitBreaker(300.0, 1800.0)
    return Pager(PageContext(prefix="svc"), bucket, breaker, RetryPolicy(), window=60.0, rng=random.Random(1))


def test_counts_racing_a_windows_end_land_in_the_next_digest() -> None:
    clock, fold = FakeClock(), Fold()
    pager = _pager(clock)
    first = Alert(logging.ERROR, "ERROR", "app", "db timeout", "db timeout")
    pager.add(first, clock())
    assert pager.take_due(clock()) is not None  # the first page opens the window
    fold.publish(pager.fold_kinds(clock()), 0.0)
    counter = fold.published[first.fingerprint].counter
    assert next(counter) == 0  # the first repeat takes the snapshot path ...
    pager.add(first, clock())
    for _ in range(5):
        next(counter)  # ... the others are only counted
    clock.advance(61.0)  # the window ends: the kind is no longer counted on the calling thread
    assert fold.publish(pager.fold_kinds(clock()), 0.1) and fold.published == {}
    next(counter)  # an application thread that looked the counter up just before the swap
    for sample, count, seen in fold.take(0.2):
        pager.add_counted(sample, count, clock(), seen=seen)
    digest = pager.take_due(clock())
    assert digest is not None and digest.alerts == 7
    next(counter)  # later still, within the grace period: the next digest has it
    for sample, count, seen in fold.take(0.3):
        pager.add_counted(sample, count, clock(), seen=seen)
    assert pager.pending == 8  # the digest in flight (7) and the straggler waiting for the next one
    fold.take(0.3 + GRACE)
    assert fold.unread == 0 and not fold.retiring


# --- import ------------------------------------------------------------------------------------------------
def test_importing_the_handler_loads_no_building_module() -> None:
    code = (
        "import json, sys; from smn_alert import SMNHandler; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('smn_alert') or m == 'requests')))"
    )
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True,
                          env={"PYTHONPATH": root})  # fmt: skip
    loaded = json.loads(done.stdout)
    assert loaded == ["smn_alert", "smn_alert._guards", "smn_alert._handler", "smn_alert.errors"]
