"""The dispatcher's threads: lazy worker, hand-over, flush and close deadlines, overflow, counters."""

from __future__ import annotations

import logging
import math
import random
import sys
import threading
import time
import tracemalloc
import types
from typing import Callable

import pytest

from smn_alert._alert import Alert
from smn_alert._compose import PageContext
from smn_alert._dispatcher import MAX_WAIT, Dispatcher, wait_seconds
from smn_alert._ledger import Ledger
from smn_alert._pager import Pager
from smn_alert._ratelimit import CircuitBreaker, RetryPolicy, TokenBucket
from smn_alert.errors import SMNAuthError, SMNServerError

from .conftest import RecordingSender


def alert(message: str = "db timeout", level: int = logging.ERROR) -> Alert:
    return Alert(level, logging.getLevelName(level), "app.db", message, message)


def make_dispatcher(
    sender: RecordingSender,
    *,
    capacity: int = 1000,
    shutdown_timeout: float = 2.0,
    budget: int = 50,
    name: str = "smn_alert",
) -> Dispatcher:
    def make_pager(ledger: Ledger) -> Pager:
        return Pager(
            PageContext(prefix="svc"),
            TokenBucket(budget, 600.0),
            CircuitBreaker(300.0, 1800.0),
            RetryPolicy(base=0.01, cap=0.05, max_age=30.0),
            window=300.0,
            rng=random.Random(1),
            ledger=ledger,
        )

    return Dispatcher(sender, make_pager, capacity=capacity, shutdown_timeout=shutdown_timeout, name=name)


def add_up(stats: dict[str, object]) -> bool:
    parts = ("sent", "folded", "suppressed", "dropped", "failed", "pending")
    return stats["received"] == sum(stats[p] for p in parts)  # type: ignore[misc]


class TestHandOver:
    def test_worker_starts_when_built(self, sender: RecordingSender) -> None:
        """The worker runs right after construction: the first alert does not pay for a thread start."""
        dispatcher = make_dispatcher(sender)
        ident = dispatcher.worker_ident
        assert ident is not None and any(t.ident == ident and t.is_alive() for t in threading.enumerate())
        assert dispatcher.submit(alert("first"))
        assert dispatcher.worker_ident == ident
        assert "first" in sender.wait_for(1)[0]
        assert sender.threads == ["smn_alert"]
        dispatcher.close()

    def test_submit_does_not_wait_for_a_hung_sender(self, sender: RecordingSender) -> None:
        """While the worker is stuck in a send, submitting thousands of alerts still returns at once."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, capacity=100_000)
        dispatcher.submit(alert())
        assert sender.entered.wait(5)
        for _ in range(10_000):
            assert dispatcher.submit(alert())
        assert dispatcher.stats()["pending"] == 10_001
        sender.release.set()
        dispatcher.close()

    def test_flush_sends_what_is_folded_and_says_true(self, sender: RecordingSender) -> None:
        """flush() sends the digest now instead of at the window's end, and returns True when empty."""
        dispatcher = make_dispatcher(sender)
        dispatcher.submit(alert())
        sender.wait_for(1)
        for _ in range(25):
            dispatcher.submit(alert())
        assert dispatcher.flush(5.0) is True
        texts = sender.wait_for(2)
        assert "x25" in texts[1]
        stats = dispatcher.stats()
        assert stats["pending"] == 0 and stats["received"] == 26 and add_up(stats)
        dispatcher.close()

    def test_flush_gives_up_at_its_deadline(self, sender: RecordingSender) -> None:
        """flush(timeout) against a hung SMN returns False after about the timeout, never hangs."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender)
        dispatcher.submit(alert())
        assert sender.entered.wait(5)
        started = time.monotonic()
        assert dispatcher.flush(0.3) is False
        assert time.monotonic() - started < 2.0
        sender.release.set()
        dispatcher.close()


class TestClose:
    def test_close_sends_pending_and_is_idempotent(self, sender: RecordingSender) -> None:
        """close() pages what was folded, closes the sender, and a second close() is harmless."""
        dispatcher = make_dispatcher(sender)
        dispatcher.submit(alert())
        sender.wait_for(1)
        dispatcher.submit(alert("last one"))
        dispatcher.close()
        dispatcher.close()
        assert "last one" in sender.texts[-1] and sender.closed
        assert dispatcher.stats()["pending"] == 0

    def test_close_never_hangs_on_a_hung_sender(self, sender: RecordingSender) -> None:
        """With SMN not answering, close() returns after shutdown_timeout and counts the alert pending."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, shutdown_timeout=0.5)
        dispatcher.submit(alert())
        assert sender.entered.wait(5)
        started = time.monotonic()
        dispatcher.close()
        assert time.monotonic() - started < 0.5 + 1.0
        assert dispatcher.stats()["pending"] == 1
        sender.release.set()

    def test_alerts_after_close_are_counted_not_lost(
        self, sender: RecordingSender, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An alert submitted after close() is counted as dropped and said, never paged nor ignored."""
        dispatcher = make_dispatcher(sender)
        dispatcher.close()
        with caplog.at_level(logging.WARNING, logger="smn_alert"):
            assert dispatcher.submit(alert()) is False
            assert dispatcher.submit(alert()) is False
        stats = dispatcher.stats()
        assert stats["received"] == 2 and stats["dropped"] == 2 and stats["pending"] == 0 and add_up(stats)
        said = [r.getMessage() for r in caplog.records if r.name == "smn_alert"]
        assert said == ["alerts logged after the SMN handler was closed are counted, not paged"]
        assert sender.texts == []

    def test_retries_during_close_stop_at_the_deadline(self, sender: RecordingSender) -> None:
        """A failing SMN at shutdown is retried only until the deadline; the alert counts as not paged."""
        sender.outcomes = [SMNServerError("down", status=503)] * 1000
        dispatcher = make_dispatcher(sender, shutdown_timeout=0.5)
        dispatcher.submit(alert())
        started = time.monotonic()
        dispatcher.close()
        assert time.monotonic() - started < 2.0
        attempts, worker = len(sender.threads), dispatcher._worker
        assert worker is not None
        worker.join(5.0)  # the worker ends by itself: no send starts after the close deadline
        assert not worker.is_alive() and len(sender.threads) <= attempts + 1
        stats = dispatcher.stats()
        assert stats["retried"] >= 1 and stats["sent"] == 0 and sender.texts == []
        assert stats["pending"] + stats["failed"] == 1 and add_up(stats)

    def test_without_a_thread_close_pages_on_the_calling_thread(
        self, sender: RecordingSender, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When no thread can start (late in shutdown, out of threads), flush() and close() send."""

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        monkeypatch.setattr(threading.Thread, "start", refuse)
        dispatcher = make_dispatcher(sender)
        assert dispatcher.submit(alert("first words"))
        assert dispatcher.worker_ident is None
        assert dispatcher.flush(2.0) is True
        assert dispatcher.submit(alert("last words"))
        monkeypatch.undo()
        dispatcher.close()
        assert sender.threads == [threading.current_thread().name] * 2
        assert "first words" in sender.texts[0] and "last words" in sender.texts[1]
        assert dispatcher.stats()["sent"] == 2

    def test_flush_then_close_keep_to_one_shutdown_timeout(self, sender: RecordingSender) -> None:
        """logging.shutdown() calls flush() then close(): with SMN hung they take one timeout, not two."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, shutdown_timeout=1.0)
        dispatcher.submit(alert())
        assert sender.entered.wait(5)
        started = time.monotonic()
        assert dispatcher.flush() is False
        dispatcher.close()
        assert time.monotonic() - started < 1.0 + 0.9
        sender.release.set()

    def test_a_close_after_a_flush_that_ran_out_of_time_does_not_wait_again(
        self, sender: RecordingSender
    ) -> None:
        """One process, one deadline: flush(timeout) ran out with SMN hung, so close() returns at once."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, shutdown_timeout=1.0)
        dispatcher.submit(alert())
        assert sender.entered.wait(5)
        assert dispatcher.flush(0.3) is False
        started = time.monotonic()
        dispatcher.close()
        assert time.monotonic() - started < 0.3
        assert dispatcher.stats()["pending"] == 1
        sender.release.set()

    def test_an_alert_after_a_flush_that_ran_out_is_still_waited_for(self, sender: RecordingSender) -> None:
        """An alert logged after the flush gave up has not been waited for yet: close() gives it its time."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, shutdown_timeout=0.5)
        dispatcher.submit(alert())
        assert sender.entered.wait(5)
        assert dispatcher.flush(0.2) is False
        dispatcher.submit(alert("new since the flush"))
        started = time.monotonic()
        dispatcher.close()
        assert time.monotonic() - started >= 0.4
        sender.release.set()

    def test_a_failed_thread_start_is_tried_again(
        self, sender: RecordingSender, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Out of threads once ("can't start new thread"): a later alert starts the worker after all."""
        real_start = threading.Thread.start

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr("smn_alert._dispatcher.THREAD_RETRY", 0.0)
        monkeypatch.setattr(threading.Thread, "start", refuse)
        dispatcher = make_dispatcher(sender)
        dispatcher.submit(alert("first"))
        assert dispatcher.worker_ident is None
        monkeypatch.setattr(threading.Thread, "start", real_start)
        dispatcher.submit(alert("second"))
        assert dispatcher.worker_ident is not None
        assert "first" in sender.wait_for(1)[0] and sender.threads[0] == "smn_alert"
        dispatcher.close()

    def test_close_sends_once_a_short_circuit_closes(self, sender: RecordingSender) -> None:
        """A circuit that reopens before the close deadline: close() sends then, not at the window's end."""
        sender.outcomes = [SMNAuthError("bad signature", status=401, code="APIG.0301")]

        def make_pager(ledger: Ledger) -> Pager:
            breaker = CircuitBreaker(0.3, 1.0)
            return Pager(
                PageContext(), TokenBucket(50, 600.0), breaker, RetryPolicy(), window=300.0, ledger=ledger
            )

        dispatcher = Dispatcher(sender, make_pager, shutdown_timeout=3.0)
        dispatcher.submit(alert("first"))
        assert dispatcher.flush(2.0) is True  # failed; the circuit is open for 0.3 s
        dispatcher.submit(alert("second"))
        started = time.monotonic()
        dispatcher.close()
        assert time.monotonic() - started < 2.0
        assert any("second" in text for text in sender.texts) and dispatcher.stats()["pending"] == 0

    def test_close_does_not_wait_for_a_circuit_that_stays_open(self, sender: RecordingSender) -> None:
        """After an auth failure, close() returns at once: nothing could go out before its deadline."""
        sender.outcomes = [SMNAuthError("bad signature", status=401, code="APIG.0301")]
        dispatcher = make_dispatcher(sender, shutdown_timeout=3.0)
        dispatcher.submit(alert("first"))
        assert dispatcher.flush(2.0) is True  # settled (as failed)
        dispatcher.submit(alert("while the circuit is open"))
        started = time.monotonic()
        dispatcher.close()
        assert time.monotonic() - started < 1.0
        stats = dispatcher.stats()
        assert stats["failed"] == 1 and stats["pending"] == 1 and add_up(stats)


#: Timeouts an application may hand flush() and close() by mistake.
ODD_TIMEOUTS = [math.inf, -math.inf, math.nan, -1.0, 0.0, 1e10, 10**400, 2**64]
ODD_IDS = ["inf", "-inf", "nan", "-1.0", "0.0", "1e10", "10**400", "2**64"]


class TestOddTimeouts:
    @pytest.mark.parametrize("timeout", ODD_TIMEOUTS, ids=ODD_IDS)
    def test_flush_and_close_take_any_timeout(self, sender: RecordingSender, timeout: float) -> None:
        """inf, nan, negative, huge: no OverflowError, no endless wait; a positive one sends the fold."""
        dispatcher = make_dispatcher(sender)
        dispatcher.submit(alert())
        sender.wait_for(1)
        dispatcher.submit(alert("folded"))
        started = time.monotonic()
        flushed = dispatcher.flush(timeout)
        dispatcher.close(timeout)
        assert time.monotonic() - started < 3.0
        if (isinstance(timeout, float) and math.isnan(timeout)) or timeout > 0:  # nan: shutdown_timeout
            assert flushed and any("folded" in text for text in sender.texts)

    @pytest.mark.parametrize("timeout", [math.nan, -math.inf, -1.0, 0.0], ids=repr)
    def test_with_smn_hung_no_timeout_blocks(self, sender: RecordingSender, timeout: float) -> None:
        """With SMN hung, nan waits shutdown_timeout and the others not at all: neither call blocks."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, shutdown_timeout=0.3)
        dispatcher.submit(alert())
        assert sender.entered.wait(5)
        started = time.monotonic()
        assert dispatcher.flush(timeout) is False
        dispatcher.close(timeout)
        assert time.monotonic() - started < 0.3 + 0.3 + 1.0
        assert dispatcher.stats()["pending"] == 1
        sender.release.set()

    @pytest.mark.parametrize("shutdown_timeout", [math.inf, 1e10, math.nan])
    def test_an_odd_shutdown_timeout_is_safe_too(
        self, sender: RecordingSender, shutdown_timeout: float
    ) -> None:
        """A dispatcher built with shutdown_timeout=1e10 (or inf, nan) closes without OverflowError."""
        dispatcher = make_dispatcher(sender, shutdown_timeout=shutdown_timeout)
        dispatcher.submit(alert())
        sender.wait_for(1)
        dispatcher.submit(alert("folded"))
        assert dispatcher.flush() is True
        dispatcher.close()
        assert any("folded" in text for text in sender.texts) and sender.closed

    def test_wait_seconds_table(self) -> None:
        """What each odd value means, in one place: None and nan the default, <= 0 none, huge a day."""
        cases = {None: 5.0, math.nan: 5.0, -1: 0.0, 0: 0.0, 2.5: 2.5, math.inf: MAX_WAIT, 10**400: MAX_WAIT}
        for given, seconds in cases.items():
            assert wait_seconds(given, 5.0) == seconds, given
        assert wait_seconds("soon", 5.0) == 5.0


class TestOverflow:
    def test_full_buffer_counts_drops_and_keeps_criticals(self, sender: RecordingSender) -> None:
        """A full buffer drops ERROR text but counts it; a CRITICAL still gets in; the next SMS says so."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, capacity=10)
        dispatcher.submit(alert("first"))
        assert sender.entered.wait(5)
        accepted = sum(dispatcher.submit(alert(f"order {index} failed")) for index in range(50))
        assert accepted == 10
        assert dispatcher.submit(alert("disk on fire", level=logging.CRITICAL))
        sender.release.set()
        assert dispatcher.flush(5.0)
        stats = dispatcher.stats()
        assert stats["dropped"] == 40 and stats["received"] == 52 and add_up(stats)
        said = [t for t in sender.texts if "disk on fire" in t and "40 of these only counted" in t]
        assert said, sender.texts
        dispatcher.close()

    def test_repeats_of_a_kind_waiting_in_a_full_buffer_lose_nothing(self, sender: RecordingSender) -> None:
        """The buffer holds the kind's first alert: its repeats past the capacity are counted, not dropped."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, capacity=10)
        dispatcher.submit(alert("first"))
        assert sender.entered.wait(5)
        accepted = sum(dispatcher.submit(alert("db timeout")) for _ in range(50))
        assert accepted == 10
        sender.release.set()
        assert dispatcher.flush(5.0)
        stats = dispatcher.stats()
        assert stats["dropped"] == 0 and stats["received"] == 51 and add_up(stats)
        assert any("x50" in t and "only counted" not in t for t in sender.texts), sender.texts
        dispatcher.close()

    def test_thousands_of_custom_levels_stay_in_bounded_memory(self, sender: RecordingSender) -> None:
        """10,000 distinct custom levels meet a full buffer: a bounded few kinds kept, every alert counted."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, capacity=10)
        dispatcher.submit(alert("first"))
        assert sender.entered.wait(5)
        for index in range(10):
            dispatcher.submit(alert(f"filler {index}"))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            admitted = sum(dispatcher.submit(alert("custom", level=31 + index)) for index in range(10_000))
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 500_000, f"{grown:,} bytes kept for 10,000 dropped alerts"  # was 4 MB: one per level
        assert admitted == 10  # the CRITICAL reserve (levels 50 and up count as critical)
        sender.release.set()
        assert dispatcher.flush(10.0)
        stats = dispatcher.stats()
        assert stats["received"] == 10_011 and stats["dropped"] == 9_990 and add_up(stats)
        dispatcher.close()

    def test_counters_are_exact_under_sixteen_threads(self, sender: RecordingSender) -> None:
        """16 threads logging at once: every alert is counted exactly once, drops included."""
        dispatcher = make_dispatcher(sender, capacity=500)
        barrier = threading.Barrier(16)

        def log_many() -> None:
            barrier.wait()
            for index in range(2000):
                dispatcher.submit(alert(f"kind {index % 7}"))

        threads = [threading.Thread(target=log_many) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert dispatcher.flush(10.0)
        stats = dispatcher.stats()
        assert stats["received"] == 32_000 and stats["pending"] == 0 and add_up(stats)
        dispatcher.close()


def submit_interrupted_at(dispatcher: Dispatcher, line: int) -> tuple[bool, bool]:
    """Submit an alert with a nested submit (as a signal handler that logs) before its ``line``-th line.

    The line counts every line run under ``submit``, at any depth (threading's included): a signal handler
    or a ``__del__`` runs between two of them. The submit runs on a helper thread, so a deadlock fails the
    test instead of hanging it. Returns the outer submit's result, and whether the path had that many lines.
    """
    outer, nested = alert("outer"), alert("nested")
    seen = [0]
    result: list[bool] = []

    def on_line(frame: types.FrameType, event: str, arg: object) -> Callable[..., object]:
        if event == "line":
            seen[0] += 1
            if seen[0] == line + 1:  # the trace function runs untraced: the nested submit is not interrupted
                dispatcher.submit(nested)
        return on_line

    def traced() -> None:
        sys.settrace(on_line)
        try:
            result.append(dispatcher.submit(outer))
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=traced, daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), f"submit deadlocked when re-entered before its line {line + 1}"
    return result[0], seen[0] > line


def threads_named(name: str) -> int:
    return sum(thread.name == name for thread in threading.enumerate())


class TestReentry:
    """A signal handler or __del__ that logs may re-enter submit() between any two lines: never a deadlock."""

    def test_reentered_while_starting_the_worker(self, sender: RecordingSender) -> None:
        """Interrupted anywhere in the first alert's worker start: one worker, both alerts paged."""
        line, reached = 0, True
        while reached:
            dispatcher = make_dispatcher(sender, name=f"reentry-{line}")
            accepted, reached = submit_interrupted_at(dispatcher, line)
            assert accepted and dispatcher.flush(5.0) and threads_named(f"reentry-{line}") == 1
            stats = dispatcher.stats()
            assert stats["received"] == 1 + reached and stats["pending"] == 0 and add_up(stats)
            dispatcher.close()
            line += 1
        assert line > 10

    def test_reentered_while_waking_the_worker(self, sender: RecordingSender) -> None:
        """Interrupted anywhere while waking a sleeping worker: no deadlock, every alert paged."""
        dispatcher = make_dispatcher(sender)
        dispatcher.submit(alert("first"))
        line, reached, received = 0, True, 1
        while reached:
            assert dispatcher.flush(5.0)
            time.sleep(0.05)  # the worker goes back to sleep until the folding window ends
            _, reached = submit_interrupted_at(dispatcher, line)
            received += 1 + reached
            line += 1
        assert dispatcher.flush(5.0)
        stats = dispatcher.stats()
        assert stats["received"] == received and stats["pending"] == 0 and add_up(stats)
        dispatcher.close()

    def test_reentered_while_counting_a_full_buffer(self, sender: RecordingSender) -> None:
        """Interrupted anywhere while counting a dropped alert: no deadlock, every drop counted."""
        sender.release.clear()
        dispatcher = make_dispatcher(sender, capacity=10)
        dispatcher.submit(alert("first"))
        assert sender.entered.wait(5)
        for index in range(10):
            dispatcher.submit(alert(f"filler {index}"))
        line, reached, dropped = 0, True, 0
        while reached:
            accepted, reached = submit_interrupted_at(dispatcher, line)
            assert not accepted
            dropped += 1 + reached
            line += 1
        sender.release.set()
        assert dispatcher.flush(5.0)
        stats = dispatcher.stats()
        assert stats["dropped"] == dropped and stats["received"] == 11 + dropped and add_up(stats)
        dispatcher.close()

    def test_reentered_after_close(self, sender: RecordingSender) -> None:
        """Interrupted anywhere while counting an alert logged after close(): counted, no deadlock."""
        dispatcher = make_dispatcher(sender)
        dispatcher.close()
        line, reached, dropped = 0, True, 0
        while reached:
            accepted, reached = submit_interrupted_at(dispatcher, line)
            assert not accepted
            dropped += 1 + reached
            line += 1
        stats = dispatcher.stats()
        assert stats["dropped"] == dropped and add_up(stats)
