"""The hand-over buffer and the background worker that turns alerts into pages.

The application thread only appends to a deque and, when the worker sleeps, sets an event: no lock is taken on
the common path and nothing there can block. One daemon worker per dispatcher, started on the first alert,
drains the buffer into a :class:`~smn_alert._pager.Pager`, sends what it says is due through a
:class:`~smn_alert._senders.Sender`, and sleeps until the next deadline. ``flush`` and ``close`` have
deadlines, ``close`` is idempotent, and a forked child starts afresh without the parent's pending alerts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Optional, Union

from smn_alert import _process
from smn_alert._alert import Alert
from smn_alert._diagnostics import Diagnostics
from smn_alert._pager import Page, Pager
from smn_alert._process import is_worker, on_worker_thread
from smn_alert._senders import Delivery, Sender
from smn_alert.errors import SMNError, SMNServerError

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_SHUTDOWN_TIMEOUT", "Dispatcher", "is_worker", "on_worker_thread"]

#: Alerts the hand-over buffer holds before new ones are only counted.
DEFAULT_CAPACITY = 10_000
#: Seconds ``close()`` and a bare ``flush()`` wait for pending pages.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
#: Seconds before starting the worker thread is tried again after it failed (often "can't start new thread").
THREAD_RETRY = 1.0
#: Kinds of alerts counted one by one while the buffer is full (one sample's text kept each); more are
#: counted together as "other kinds", so a flood of distinct messages cannot grow memory.
MAX_OVERFLOW_KINDS = 100

_log = logging.getLogger("smn_alert")


class Dispatcher:
    """Takes alerts from any thread and pages them from one background thread.

    Args:
        sender: Sends one SMS text (SmsBatchPublish or topic).
        make_pager: Builds the decision state; called again in a forked child so it starts empty.
        capacity: Alerts the buffer holds; past it, ERRORs are counted as dropped. CRITICALs get a reserve
            of a tenth more, so a CRITICAL is never dropped to keep an ERROR.
        shutdown_timeout: Default deadline for ``flush()`` and ``close()``.
        clock: Monotonic clock for the pager's decisions.
        name: Name of the worker thread.
    """

    def __init__(
        self,
        sender: Sender,
        make_pager: Callable[[], Pager],
        *,
        capacity: int = DEFAULT_CAPACITY,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        name: str = "smn_alert",
    ) -> None:
        self._sender, self._make_pager = sender, make_pager
        self.capacity, self.shutdown_timeout = capacity, shutdown_timeout
        self._ceiling = capacity + max(10, capacity // 10)
        self._limit = capacity
        self._clock, self._name = clock, name
        self._closed = False
        self._reset()
        _process.register(self)

    def _reset(self) -> None:
        """Fresh buffer, locks and pager: at construction and in a forked child."""
        self._buffer: deque[Alert] = deque()
        self._wake = threading.Event()
        # Re-entrant, as the stdlib handlers' locks: a signal handler that logs while this thread holds
        # one (a flush, the overflow path) must not deadlock the process.
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._overflow_lock = threading.RLock()
        self._overflow = 0  # alerts counted while the buffer was full, by kind below
        self._after_close = 0  # alerts logged after close(): counted as dropped, never paged
        # kind -> [first alert, count, beyond the kinds' limit]; past the limit, one entry per level
        self._overflow_kinds: dict[Any, list[Any]] = {}
        self._pager = self._make_pager()
        self._worker: Optional[threading.Thread] = None
        self.worker_ident: Optional[int] = None
        self._no_thread = False  # the last try to start the worker failed ...
        self._thread_failed_at = 0.0  # ... at this time.monotonic(); tried again a second later
        self._closing = False
        self._close_deadline = 0.0
        self._flushers = 0
        # (ended at, deadline, result) of the last flush() without timeout
        self._bare_flush = (0.0, 0.0, True)
        self._diagnostics = Diagnostics()  # fresh in a forked child too: its first trouble is said at once
        self._say = self._diagnostics.say  # a short name: the messages are long

    # --- application thread -------------------------------------------------------------------------
    def submit(self, alert: Alert) -> bool:
        """Hand ``alert`` to the worker without blocking; False when it could only be counted."""
        buffer = self._buffer
        if len(buffer) >= self._limit and not self._admit_over_capacity(alert):
            return False
        buffer.append(alert)
        if self._worker is None:
            self._start_worker()
        if not self._wake.is_set():
            self._wake.set()
        return True

    def _admit_over_capacity(self, alert: Alert) -> bool:
        """Handle a full (or closed) buffer: admit a CRITICAL into the reserve, else count it."""
        if self._closed:
            with self._overflow_lock:
                self._after_close += 1
            self._say("closed", "alerts logged after the SMN handler was closed are counted, not paged")
            return False
        if alert.levelno >= logging.CRITICAL and len(self._buffer) < self._ceiling:
            return True
        with self._overflow_lock:
            self._overflow += 1
            kinds = self._overflow_kinds
            key: Any = alert.fingerprint
            other = key not in kinds and len(kinds) >= MAX_OVERFLOW_KINDS
            if other:
                key = ("other", alert.levelno)
            entry = kinds.get(key)
            if entry is None:
                kinds[key] = [alert, 1, other]
            else:
                entry[1] += 1
        return False

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            if self._no_thread and time.monotonic() - self._thread_failed_at < THREAD_RETRY:
                return
            worker = threading.Thread(target=self._run, name=self._name, daemon=True)
            try:
                worker.start()
            except RuntimeError as error:  # late in shutdown, or out of threads: page on callers' threads
                self._no_thread, self._thread_failed_at = True, time.monotonic()
                reason = str(error)
            else:
                self._worker, self.worker_ident, self._no_thread = worker, worker.ident, False
                return
        self._say("thread", "smn_alert could not start its thread (%s); flush() and close() send", reason)

    # --- worker thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        with _process.worker_thread():
            while True:
                try:
                    if not self._step():
                        return
                except Exception:  # a bug must not stop paging: say it, breathe, carry on (like sentry's)
                    self._say("bug", "smn_alert's worker hit an unexpected error; it carries on", exc=True)
                    self._wake.wait(1.0)

    def _step(self, *, wait: bool = True) -> bool:
        """One pass: wait for work or a deadline, take what is due, send it. False when closing is done."""
        if wait:
            self._wake.wait(self._sleep_time())
        self._wake.clear()
        if self._closing:
            with self._lock:
                if self._finished():  # never start a send after the close deadline
                    self._settled.notify_all()
                    return False
        page = self._take()
        if page is not None:
            self._settle(page, self._send(page))
        with self._lock:
            self._settled.notify_all()
            return not (self._closing and self._finished())

    def _sleep_time(self) -> Optional[float]:
        """Return seconds to the pager's next deadline (None: until woken), capped by the close deadline."""
        with self._lock:
            now = self._clock()
            closing = self._closing
            # Closing sends at once what may go: wake when the circuit or a backoff allows, not at the
            # folding window's end.
            wakeup = self._pager.blocked_until(now, final=True) if closing else self._pager.next_wakeup(now)
        delay = None if wakeup is None else max(0.0, wakeup - now)
        if closing:
            left = max(0.0, self._close_deadline - time.monotonic())
            delay = left if delay is None else min(delay, left)
        return delay

    def _take(self) -> Optional[Page]:
        with self._lock:
            now = self._clock()
            self._drain(now)
            closing = self._closing
            page = self._pager.take_due(now, force=closing or self._flushers > 0, override_budget=closing)
        if page is not None and page.trouble:
            self._say("compose", "%s", page.trouble)
        return page

    def _drain(self, now: float) -> None:
        buffer, pager = self._buffer, self._pager
        while buffer:
            pager.add(buffer.popleft(), now)
        if self._overflow:
            with self._overflow_lock:
                count, self._overflow = self._overflow, 0
                kinds, self._overflow_kinds = self._overflow_kinds, {}
            for sample, dropped, other in kinds.values():
                pager.add_dropped(sample, dropped, now, other=other)
            self._say("overflow", "%d alerts dropped: the buffer of %d was full", count, self.capacity)

    def _send(self, page: Page) -> Union[Delivery, SMNError]:
        try:
            return self._sender.send(page.text)
        except SMNError as error:
            return error
        except Exception as error:  # the sender's bug or requests' surprise: retry like a server error
            # The type only: the text of such errors can quote proxy URLs with their passwords.
            return SMNServerError(f"sending failed: {type(error).__name__}")

    def _settle(self, page: Page, outcome: Union[Delivery, SMNError]) -> None:
        with self._lock:
            note = self._pager.settle(page, outcome, self._clock())
        if note is not None:
            kind, text = note
            level = logging.INFO if kind == "recovered" else logging.WARNING
            self._say(kind, "%s", text, always=kind in ("undelivered", "recovered"), level=level)

    def _finished(self) -> bool:
        """Tell whether closing is done: nothing is left, or nothing more can go before the deadline.

        What is left stays counted as pending: the deadline passed, or an open circuit (or a backoff)
        will not let a page out before it, so waiting would only delay the application's exit.
        """
        left = bool(self._buffer) or self._pager.pending > 0 or self._overflow > 0
        remaining = self._close_deadline - time.monotonic()
        if not left or remaining <= 0:
            return True
        now = self._clock()
        blocked = self._pager.blocked_until(now, final=True)
        return blocked is not None and blocked - now > remaining

    def say_trouble(self, key: str, message: str, *args: object) -> None:
        """Report a problem of an adapter (handler, processor) the same rate-limited way as our own."""
        self._diagnostics.say(key, message, *args)

    # --- control ------------------------------------------------------------------------------------
    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send what is pending now, waiting at most ``timeout`` seconds (default ``shutdown_timeout``).

        Returns True when nothing is left pending. Returns early (False) when what is left cannot go out
        before the deadline: the SMS budget is spent or the circuit is open.
        """
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        if self._closed:  # logging.shutdown() flushes after our atexit closed us: share that deadline
            deadline = min(deadline, self._close_deadline)
        if self._buffer and self._worker is None:
            self._start_worker()
        if self._no_thread:
            self._pump_here(deadline)
            result = self.stats()["pending"] == 0
        else:
            with self._lock:
                self._flushers += 1
                try:
                    result = self._wait_until_empty(deadline)
                finally:
                    self._flushers -= 1
        if timeout is None:
            self._bare_flush = (time.monotonic(), deadline, result)
        return result

    def _wait_until_empty(self, deadline: float) -> bool:
        while True:
            self._wake.set()  # even when we give up early, the worker looks once (and notes a hold)
            if not self._buffer and not self._overflow and self._pager.pending == 0:
                return True
            remaining = deadline - time.monotonic()
            now = self._clock()
            blocked = self._pager.blocked_until(now)
            stuck = self._worker is None or not self._worker.is_alive()
            if remaining <= 0 or stuck or (blocked is not None and blocked - now > remaining):
                return False
            self._settled.wait(min(remaining, 0.1))

    def close(self, timeout: Optional[float] = None) -> None:
        """Send what is pending within ``timeout`` (default ``shutdown_timeout``), then stop; idempotent."""
        if self._closed:
            return
        self.begin_close(self._close_time() if timeout is None else timeout)
        self.finish_close()

    def _close_time(self) -> float:
        """Seconds for a bare ``close()``: what is left of a bare ``flush()`` that just gave up, if any.

        ``logging.shutdown()`` (and ``dictConfig`` replacing handlers) calls ``flush()`` then ``close()``;
        together they keep to one ``shutdown_timeout``, not two.
        """
        ended, deadline, result = self._bare_flush
        if not result and time.monotonic() - ended < 1.0:
            return max(0.5, deadline - time.monotonic())
        return self.shutdown_timeout

    def begin_close(self, timeout: Optional[float] = None) -> None:
        """Tell the worker to send everything now and stop (half of ``close``, for closing many at once)."""
        with self._lock:
            self._closed = True
            self._closing = True
            self._limit = 0  # every later submit takes the slow path, which counts it
            self._pager.expedite()
            self._close_deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        self._wake.set()

    def finish_close(self) -> None:
        """Wait for the worker until the deadline; without a worker, page on the calling thread."""
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, self._close_deadline - time.monotonic()))
        elif worker is None and (self._buffer or self._overflow):
            self._pump_here(self._close_deadline)
        left = self.stats()["pending"]
        if left:
            _log.warning("smn_alert: %d alerts were not paged before shutdown", left)
        self._sender.close()

    def _pump_here(self, deadline: float) -> None:
        """Page on the calling thread (no worker could start) until nothing is due, or the deadline."""
        with self._lock:
            self._flushers += 1
        try:
            while time.monotonic() < deadline:
                page = self._take()
                if page is None:
                    return
                self._settle(page, self._send(page))
        finally:
            with self._lock:
                self._flushers -= 1

    # --- observation --------------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        """Counters that add up: received = sent + folded + suppressed + dropped + failed + pending."""
        with self._lock:
            counters = self._pager.counters
            queued = len(self._buffer) + self._overflow
            result: dict[str, object] = {
                "received": counters.received + queued + self._after_close,
                "sent": counters.sent,
                "folded": counters.folded,
                "suppressed": counters.suppressed,
                "dropped": counters.dropped + self._after_close,
                "failed": counters.failed,
                "pending": self._pager.pending + queued,
                "pages": counters.pages,
                "segments": counters.segments,
                "retried": counters.retried,
                "refused": counters.refused,
                "delivered": dict(counters.delivered),
                "last_error": counters.last_error,
            }
        return result

    @property
    def closed(self) -> bool:
        """Tell whether closing has begun: later alerts are counted as dropped, never paged."""
        return self._closed

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child, without the parent's pending alerts, worker or locks."""
        self._reset()  # even a closed one: its locks may have been held by a thread that is gone
