"""``RecordingSender``: an in-process sender that records each page's text instead of sending it.

For tests that need the whole pipeline (folding, the budget, retries, the counters) but no sockets, as
structlog's ``capture_logs`` needs no handler: ``SMNHandler(..., sender=RecordingSender())``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Optional, Union

from smn_alert._senders import Delivery
from smn_alert.errors import SMNError

#: The numbers a ``RecordingSender`` reports as paged unless it is given others.
DEFAULT_RECIPIENTS = ("+8613800000001", "+8613800000002")


class RecordingSender:
    """A sender for ``SMNHandler(sender=...)`` and ``SMNProcessor(sender=...)`` that records texts.

    Each page the pipeline sends is appended to :attr:`texts` and reported delivered to every number of
    ``endpoints`` (give it the handler's numbers, so that the counters count per number as SMN bills).
    It runs on the pipeline's worker thread, like a real sender::

        sender = RecordingSender(["+8613800000000"])
        handler = SMNHandler(["+8613800000000"], sign_id="...", sender=sender)
        logging.getLogger("app").addHandler(handler)
        logging.getLogger("app").error("db down")
        assert sender.wait_for(1) and "db down" in sender.texts[0]

    Scripting and holding:

    - :attr:`outcomes`: what the next sends give, in order, before the default delivery: an
      :class:`~smn_alert.SMNError` is raised (``SMNServerError("down", status=503)`` is retried by the
      pipeline, ``SMNAuthError`` opens its circuit), anything else is returned as the delivery;
    - :attr:`release`: a set ``threading.Event``; ``release.clear()`` holds every send (a hung SMN) until
      ``release.set()``, and :attr:`entered` is set once a send has begun.

    Attributes:
        endpoints: The numbers each send is reported delivered to.
        texts: The texts delivered, oldest first (a send that raised records none).
        threads: The name of the thread of each send, raised or not.
        closed: Whether the pipeline closed the sender.
    """

    def __init__(self, endpoints: Optional[Sequence[str]] = None) -> None:
        self.endpoints = tuple(endpoints or DEFAULT_RECIPIENTS)
        self.texts: list[str] = []
        self.threads: list[str] = []
        self.outcomes: list[Union[SMNError, Delivery]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.closed = False
        self._cond = threading.Condition()

    def send(self, text: str) -> Delivery:
        """Record ``text`` and report it delivered, or give the next scripted outcome; wait while held."""
        self.entered.set()
        self.release.wait()
        with self._cond:
            outcome = self.outcomes.pop(0) if self.outcomes else Delivery(delivered=self.endpoints)
            if isinstance(outcome, Delivery):
                self.texts.append(text)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()
        if isinstance(outcome, SMNError):
            raise outcome
        return outcome

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait up to ``timeout`` seconds until ``count`` texts were delivered; return the texts so far."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.texts) >= count, timeout)
            return list(self.texts)

    def close(self) -> None:
        """Note that the pipeline closed the sender."""
        self.closed = True
