"""Alerts that met a full (or closed) hand-over buffer: counted by kind in bounded memory, re-entrantly.

The application thread counts here and the worker takes the counts. A signal handler (or a ``__del__``) that
logs may interrupt a count on the thread doing it: the lock is re-entrant, and an alert handed in while its
thread is already counting is left for the interrupted count (or the worker) to finish, so no count is lost
or made twice, and nothing on the way can deadlock.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from smn_alert._alert import Alert, Fingerprint, kind_key
from smn_alert._ledger import Ledger

#: Kinds of alerts counted one by one while the buffer is full (one sample's text kept each); more are
#: counted together as "other kinds" of their level band, so a flood of distinct messages (or of distinct
#: custom levels) cannot grow the application's memory. Smaller than what a page shows
#: (``_pager.DEFAULT_MAX_KINDS_PER_PAGE``): this bound is paid on the application thread, during a flood.
MAX_DROPPED_KINDS = 100

#: What :meth:`Overflow.take` hands the worker per kind: (first alert, count, among "other kinds", kept): kept
#: when the kind's first alert is in the buffer, so its text is not lost (repeats, only counted).
Dropped = tuple[Alert, int, bool, bool]


class Overflow:
    """Counts dropped alerts by kind (``max_kinds`` kinds, then "other kinds" per level band), and late ones.

    Args:
        ledger: Where alerts logged after close are counted, for good.
        max_kinds: Kinds counted one by one; more are counted per level band.
    """

    def __init__(self, ledger: Ledger, max_kinds: int = MAX_DROPPED_KINDS) -> None:
        self._ledger = ledger
        self._lock = threading.RLock()
        self._max_kinds = max_kinds
        self._waiting: deque[tuple[Alert, bool, bool]] = deque()  # (alert, late, kept), not counted yet
        self._counting = False  # this lock's owner is counting: a re-entered add leaves its alert waiting
        self._total = 0  # dropped since the worker last took them
        # kind -> [first alert, count, among "other kinds", kept]
        self._kinds: dict[Fingerprint, list[Any]] = {}

    @property
    def dropped(self) -> int:
        """Alerts dropped since the worker last took them (including any not counted by kind yet)."""
        return self._total + sum(not late for _, late, _ in list(self._waiting))

    def add(self, alert: Alert, *, late: bool = False, kept: bool = False) -> None:
        """Count ``alert`` as dropped; safe to re-enter.

        ``late``: logged after close. ``kept``: its kind's first alert is in the buffer, so no text is lost.
        """
        with self._lock:
            self._waiting.append((alert, late, kept))
            if self._counting:
                return  # re-entered on the thread that is counting: the interrupted count takes it
            self._counting = True
            try:
                self._count_waiting()
            finally:
                self._counting = False

    def take(self) -> tuple[int, list[Dropped]]:
        """Return the dropped alerts' total and kinds since the last take, and start counting afresh."""
        with self._lock:
            self._count_waiting()  # any left by a count interrupted at its very end
            total, self._total = self._total, 0
            kinds, self._kinds = self._kinds, {}
        return total, [(sample, count, other, kept) for sample, count, other, kept in kinds.values()]

    def _count_waiting(self) -> None:
        waiting, kinds = self._waiting, self._kinds
        while waiting:
            alert, late, kept = waiting.popleft()
            if late:
                self._ledger.late += 1  # under the lock, never re-entered: no count is lost
                continue
            key, other = kind_key(alert, kinds, self._max_kinds)
            entry = kinds.get(key)
            if entry is None:
                kinds[key] = [alert, 1, other, kept and not other]
            else:
                entry[1] += 1
            self._total += 1
