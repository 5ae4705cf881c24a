"""The hand-over buffer: what the application thread touches on its way to the worker.

The application thread only appends to a deque and, when the worker sleeps, puts a token on a
``queue.SimpleQueue`` (whose ``put`` is safe to re-enter from a signal handler or ``__del__``): no lock
that is not re-entrant is taken on that path and nothing there can block. Past the capacity an alert is
only counted, by kind (:class:`~smn_alert._overflow.Overflow`); CRITICALs get a reserve first.

The fast path is :meth:`HandOver.put`; replacing it (a calling-thread fast path, a shared queue) is a change
to this module alone. The worker side is :meth:`HandOver.wait` and the ``take_*`` methods.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from collections import deque
from collections.abc import Iterator
from typing import Optional

from smn_alert._alert import Alert
from smn_alert._ledger import Ledger
from smn_alert._overflow import Dropped, Overflow

#: The longest the idle worker sleeps in one go (it then looks again): keeps any timeout in range.
MAX_SLEEP = 3600.0
#: Kinds the buffer notes as waiting in it (see ``HandOver.count_dropped``); a flood of distinct kinds stops
#: being noted there, and its repeats are then counted as dropped, as before.
MAX_KEPT_KINDS = 1000


class HandOver:
    """Alerts handed from any thread to one worker, in bounded memory.

    Args:
        capacity: Alerts held; past it, ERRORs are counted as dropped. CRITICALs get a reserve of a tenth
            more (at least 10), so a CRITICAL is never dropped to keep an ERROR.
        ledger: Where alerts logged after close are counted.
    """

    def __init__(self, capacity: int, ledger: Ledger) -> None:
        self.capacity = capacity
        self._ceiling = capacity + max(10, capacity // 10)
        self._limit = capacity
        self._alerts: deque[Alert] = deque()
        # The worker sleeps on this queue and a token wakes it. SimpleQueue.put is re-entrant (safe from a
        # signal handler or __del__); threading.Event.set is not: its lock would deadlock the thread.
        self._wakeup: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._asleep = False  # the worker sleeps (or is about to) on _wakeup: a new alert puts a token
        #: Only an alert above this level wakes the worker (it could page now); the worker sets it after each
        #: look (``Pager.wake_level``). Others wait for the worker's own look, a few times a second.
        self.wake_above = -1
        self._urgent = False  # an alert worth waking for came since the worker last looked
        self._overflow = Overflow(ledger)  # alerts counted while the buffer was full, or after close
        # Kinds whose first alert waits in the buffer (bounded): a repeat that meets a full buffer loses no
        # text, only counts. Cleared when the worker takes the alerts (its pager holds them then).
        self._kept: set[object] = set()

    # --- application thread -------------------------------------------------------------------------
    def put(self, alert: Alert) -> bool:
        """Append ``alert`` and wake the worker if it sleeps; False (nothing done) when the buffer is full."""
        alerts = self._alerts
        if len(alerts) >= self._limit:
            return False
        first = not alerts
        alerts.append(alert)
        if len(self._kept) < MAX_KEPT_KINDS:
            self._kept.add(alert.fingerprint)
        # Above the level: it could page now. The first since the worker looked: a window its clock has seen
        # end (a repeat of a folded kind never gets here), so one wake per batch, not per alert.
        if first or alert.levelno > self.wake_above:
            self._urgent = True  # before looking at _asleep: wait() looks at them the other way round
            if self._asleep:
                self.wake()
        return True

    def put_reserve(self, alert: Alert) -> bool:
        """Admit a CRITICAL into the reserve past the capacity; False if it is full too (or not CRITICAL)."""
        if alert.levelno >= logging.CRITICAL and len(self._alerts) < self._ceiling:
            self._alerts.append(alert)
            self._urgent = True
            self.wake()
            return True
        return False

    def put_late(self, alert: Alert) -> None:
        """Append ``alert`` past any limit: logged after close, it is paged within the deadline left."""
        self._alerts.append(alert)
        self._urgent = True

    def count_dropped(self, alert: Alert, *, late: bool = False) -> None:
        """Count ``alert`` as dropped (``late``: logged after close, never paged); safe to re-enter.

        A repeat of a kind whose first alert waits in the buffer is counted as such: its text is not lost.
        """
        self._overflow.add(alert, late=late, kept=not late and alert.fingerprint in self._kept)

    def wake(self) -> None:
        """Wake the worker if it sleeps."""
        if self._asleep:
            self._asleep = False
            self._wakeup.put(None)

    def poke(self) -> None:
        """Have the worker look once, asleep or not (flush, close)."""
        self._wakeup.put(None)

    def close(self) -> None:
        """Take no more alerts: every later ``put`` fails, and the caller counts (or pages late) the alert."""
        self._limit = 0

    # --- worker thread ------------------------------------------------------------------------------
    def wait(self, seconds: Optional[float]) -> None:
        """Sleep until a token comes (an alert worth waking for, flush, close) or ``seconds`` pass."""
        self._asleep = True
        if not self._urgent:  # after _asleep: an urgent alert appended now puts a token, one before is seen
            if seconds is not None and not 0.0 <= seconds <= MAX_SLEEP:
                seconds = MAX_SLEEP if seconds > MAX_SLEEP else 0.0
            with contextlib.suppress(queue.Empty):
                self._wakeup.get(timeout=seconds)
        self._asleep = False
        self._urgent = False  # before the worker drains: a later urgent alert is either drained or wakes it
        with contextlib.suppress(queue.Empty):
            while True:
                self._wakeup.get_nowait()

    def take_alerts(self) -> Iterator[Alert]:
        """Yield the alerts handed over, oldest first, until none is left."""
        alerts = self._alerts
        self._kept = set()  # before taking: a kind appended from now on is noted afresh
        while alerts:
            yield alerts.popleft()

    def take_dropped(self) -> tuple[int, list[Dropped]]:
        """Return how many alerts were dropped since the last take, and their kinds (``Overflow.take``)."""
        return self._overflow.take() if self._overflow.dropped else (0, [])

    # --- observation --------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Alerts handed over and not taken yet."""
        return len(self._alerts)

    @property
    def queued(self) -> int:
        """Alerts handed over (or counted while full) that the worker has not taken yet."""
        return len(self._alerts) + self._overflow.dropped

    @property
    def dropped(self) -> int:
        """Alerts counted while the buffer was full, not taken yet."""
        return self._overflow.dropped
