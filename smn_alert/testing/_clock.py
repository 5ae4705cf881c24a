"""``FakeClock``: a monotonic clock for the pipeline that moves only when a test says so."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that moves only when a test says so.

    Give it to ``SMNHandler(clock=...)`` (or ``SMNProcessor``): the pipeline decides the folding window,
    the budget, retry backoff and the circuit by it. After :meth:`advance`, ``handler.flush()`` wakes the
    worker to look again, so a test covers minutes of paging without sleeping.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """Return the current (fake) time."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward; return the new time."""
        self.now += seconds
        return self.now
