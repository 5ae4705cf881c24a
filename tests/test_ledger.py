"""Tests for smn_alert/_ledger.py: one object holds every counter, and its stats() view adds up."""

from __future__ import annotations

from smn_alert._ledger import Ledger

PARTS = ("sent", "folded", "suppressed", "dropped", "failed", "pending")


class TestStats:
    def test_a_fresh_ledger_says_nothing_happened(self) -> None:
        stats = Ledger().stats(queued=0, pending=0)
        assert all(
            stats[name] == 0 for name in ("received", *PARTS, "pages", "segments", "retried", "refused")
        )
        assert stats["delivered"] == {}
        assert stats["last_error"] is None

    def test_queued_alerts_are_received_and_pending(self) -> None:
        """Alerts still in the buffer are counted as received and pending, so the counters add up."""
        ledger = Ledger(received=10, sent=2, folded=5, dropped=1)
        stats = ledger.stats(queued=4, pending=2)
        assert stats["received"] == 14
        assert stats["pending"] == 6
        assert stats["received"] == sum(stats[name] for name in PARTS)  # type: ignore[misc]

    def test_late_alerts_are_received_and_dropped(self) -> None:
        """An alert logged after close is counted once, as received and dropped."""
        ledger = Ledger(late=3)
        stats = ledger.stats(queued=0, pending=0)
        assert (stats["received"], stats["dropped"]) == (3, 3)
        assert ledger.total_received(queued=2) == 5

    def test_delivered_is_a_copy(self) -> None:
        ledger = Ledger(delivered={"+86138****0001": 1})
        stats = ledger.stats(queued=0, pending=0)
        stats["delivered"]["x"] = 1  # type: ignore[index]
        assert ledger.delivered == {"+86138****0001": 1}
