"""Tests for smn_alert/_buffer.py: the hand-over buffer's capacity, CRITICAL reserve, counts and wake-ups."""

from __future__ import annotations

import logging
import threading
import time

from smn_alert._alert import Alert
from smn_alert._buffer import HandOver
from smn_alert._ledger import Ledger


def alert(message: str = "db timeout", level: int = logging.ERROR) -> Alert:
    return Alert(level, logging.getLevelName(level), "app.db", message, message)


class TestHandOver:
    def test_put_until_full_then_refuse(self) -> None:
        buffer = HandOver(3, Ledger())
        assert all(buffer.put(alert(str(n))) for n in range(3))
        assert not buffer.put(alert("fourth"))
        assert len(buffer) == 3
        assert [a.message for a in buffer.take_alerts()] == ["0", "1", "2"]
        assert len(buffer) == 0

    def test_criticals_have_a_reserve_errors_do_not(self) -> None:
        """Past capacity, a CRITICAL gets a tenth more (at least 10); an ERROR does not."""
        buffer = HandOver(10, Ledger())
        for n in range(10):
            buffer.put(alert(str(n)))
        assert not buffer.put_reserve(alert("error"))
        assert all(buffer.put_reserve(alert(f"c{n}", logging.CRITICAL)) for n in range(10))
        assert not buffer.put_reserve(alert("c-last", logging.CRITICAL))
        assert len(buffer) == 20

    def test_dropped_alerts_are_queued_until_taken(self) -> None:
        buffer = HandOver(1, Ledger())
        buffer.put(alert("kept"))
        buffer.count_dropped(alert("lost"))
        buffer.count_dropped(alert("lost"))
        assert (buffer.queued, buffer.dropped) == (3, 2)
        count, kinds = buffer.take_dropped()
        assert count == 2
        assert [(sample.message, n, other, kept) for sample, n, other, kept in kinds] == [
            ("lost", 2, False, False)
        ]
        assert buffer.take_dropped() == (0, [])

    def test_late_alerts_go_to_the_ledger(self) -> None:
        ledger = Ledger()
        buffer = HandOver(10, ledger)
        buffer.count_dropped(alert("after close"), late=True)
        assert ledger.late == 1
        assert buffer.queued == 0

    def test_closed_buffer_takes_nothing_but_late_alerts(self) -> None:
        buffer = HandOver(10, Ledger())
        buffer.close()
        assert not buffer.put(alert())
        buffer.put_late(alert("late"))
        assert len(buffer) == 1

    def test_put_wakes_a_waiting_worker(self) -> None:
        buffer = HandOver(10, Ledger())
        woke = threading.Event()

        def worker() -> None:
            buffer.wait(30.0)
            woke.set()

        thread = threading.Thread(target=worker)
        thread.start()
        deadline = time.monotonic() + 5.0
        while not buffer._asleep and time.monotonic() < deadline:
            time.sleep(0.001)
        started = time.monotonic()
        buffer.put(alert())
        assert woke.wait(5.0)
        thread.join(5.0)
        assert time.monotonic() - started < 5.0

    def test_wait_returns_at_once_when_alerts_are_there(self) -> None:
        buffer = HandOver(10, Ledger())
        buffer.put(alert())
        started = time.monotonic()
        buffer.wait(30.0)
        assert time.monotonic() - started < 1.0
