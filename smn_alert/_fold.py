"""Repeats counted on the application thread: one counter per kind the worker is folding.

While a kind's folding window is open and nothing about it is due, another alert of that kind changes
nothing but a count. The worker publishes ``{fingerprint: itertools.count()}`` for those kinds
(:attr:`Fold.published`, replaced whole, never changed in place); the application thread looks its alert's
fingerprint up there and calls ``next(counter)``: one C call, atomic under the GIL, no lock, safe to re-enter
from a signal handler. No snapshot, no wake-up. The first alert on a fresh counter (``next`` answers 0)
still takes the snapshot path, so the next digest shows an alert of its own window, not the last one's.

The worker reads each counter without advancing it (:func:`count_value`) and hands the difference since its
last read to the pager. A counter it stops publishing (the window ended, the kind escalated, closing) is
kept and read for a grace period (:data:`GRACE` seconds and :data:`GRACE_READS` reads), so an increment
racing the swap still lands, in the next digest. Until read, counts are "queued" (:attr:`Fold.unread`),
so ``stats()`` adds up at every moment.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Optional

from smn_alert._alert import Alert, Fingerprint

#: Seconds a counter no longer published is still read: an application thread that looked it up just
#: before the swap may increment it a moment later.
GRACE = 1.0
#: Reads of a counter no longer published, at least (whatever the clock says).
GRACE_READS = 2


def count_value(counter: itertools.count[int]) -> int:
    """Return the next value ``counter`` would give, without advancing it (its repr is ``count(N)``)."""
    return int(repr(counter)[6:-1])


class Tally:
    """One kind's counter, its sample alert, and what the worker has read of it so far.

    The application thread calls ``next(tally.counter)`` and, when that counted, sets :attr:`last` to the
    record's own time (one attribute store: atomic, no lock), so a digest dates its repeats by the records,
    not by when the worker read them.
    """

    __slots__ = ("counter", "last", "read", "reads", "retired_at", "sample")

    def __init__(self, sample: Alert) -> None:
        self.sample = sample
        self.counter = itertools.count()
        self.last: Optional[float] = None  # wall time of the latest repeat counted, when the caller knew it
        self.read = 1  # the first increment is the alert that took the snapshot path (counted there)
        self.reads = 0  # reads since it was retired
        self.retired_at = 0.0

    def take(self) -> int:
        """Return the increments since the last take."""
        value = count_value(self.counter)
        if value <= self.read:
            return 0
        new, self.read = value - self.read, value
        return new

    @property
    def unread(self) -> int:
        return max(0, count_value(self.counter) - self.read)


class Fold:
    """The counters of the kinds being folded; the worker's side (the application reads :attr:`published`)."""

    def __init__(self) -> None:
        #: Fingerprint -> tally, for the application thread; replaced whole by :meth:`publish`.
        # Keyed by Optional[Fingerprint]: the application looks up None (no cheap fingerprint) and misses.
        self.published: dict[Optional[Fingerprint], Tally] = {}
        self._live: dict[Fingerprint, Tally] = {}
        self._retired: list[Tally] = []

    def publish(self, kinds: Mapping[Fingerprint, Alert], now: float) -> bool:
        """Count ``kinds`` (fingerprint -> sample) on the calling threads from now on; False if unchanged.

        Kinds no longer in ``kinds`` are retired at ``now`` (real monotonic seconds): read until the grace
        period is over.
        """
        if kinds.keys() == self._live.keys():
            return False
        live = {
            key: self._live.pop(key) if key in self._live else Tally(sample) for key, sample in kinds.items()
        }
        for tally in self._live.values():
            tally.retired_at = now
            self._retired.append(tally)
        self._live = live
        self.published = {key: tally for key, tally in live.items()}  # typed with Optional keys
        return True

    def take(self, now: float) -> list[tuple[Alert, int, Optional[float]]]:
        """Return ``(sample, count, last seen)`` per kind counted since the last take.

        ``last seen`` is the latest repeat's own wall time, or None when the callers could not say. Retired
        counters past their grace period are dropped.
        """
        counted = []
        for tally in (*self._live.values(), *self._retired):
            new = tally.take()
            if new:
                counted.append((tally.sample, new, tally.last))
        for tally in self._retired:
            tally.reads += 1
        self._retired = [t for t in self._retired if t.reads < GRACE_READS or now - t.retired_at < GRACE]
        return counted

    @property
    def unread(self) -> int:
        """Alerts counted on the calling threads that the worker has not taken yet."""
        return sum(tally.unread for tally in (*self._live.values(), *self._retired))

    @property
    def retiring(self) -> bool:
        """Tell whether counters no longer published are still being read (the worker should look soon)."""
        return bool(self._retired)
