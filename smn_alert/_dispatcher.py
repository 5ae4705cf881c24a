"""The background worker that turns alerts into pages, and the dispatcher's lifecycle (flush, close, fork).

The application thread hands alerts over through a :class:`~smn_alert._buffer.HandOver` (no lock that is not
re-entrant, nothing that can block), or only counts a repeat being folded (:mod:`smn_alert._fold`). One daemon
worker per dispatcher, started when it is built (and in a forked child by the fork hook), drains
the buffer into a :class:`~smn_alert._pager.Pager`, sends what it says is due through a
:class:`~smn_alert._senders.Sender`, logs the notes the pager words, and sleeps until the next deadline.
``flush`` and ``close`` have deadlines, ``close`` is idempotent, and a forked child starts afresh without
the parent's pending alerts (after ``os.fork()``, and after a fork from C that skipped Python's hooks).

Two clocks, one rule. Decisions (folding window, budget, circuit, backoff: the pager and its parts) run on
the injected monotonic ``clock``, so tests drive them with a ``FakeClock``; real waits (the ``flush`` and
``close`` deadlines, the thread-start retry, how long the worker sleeps) run on ``time.monotonic()``, since
a thread can only wait real time. An instant of one clock is never compared with an instant of the other:
where both meet (does the pager's next moment fall before the close deadline?), each side is turned into a
duration from its own clock's ``now`` first, and the durations are compared.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from smn_alert import _guards, _process
from smn_alert._alert import Alert
from smn_alert._buffer import HandOver
from smn_alert._diagnostics import Diagnostics, tell_stderr
from smn_alert._fold import Fold
from smn_alert._ledger import Ledger
from smn_alert._pager import Note, Page, Pager
from smn_alert._senders import Delivery, Sender
from smn_alert.errors import SMNError, SMNServerError

if TYPE_CHECKING:
    from smn_alert._sharing import Sharing

#: Alerts the hand-over buffer holds before new ones are only counted.
DEFAULT_CAPACITY = 10_000
#: Seconds ``close()`` and a bare ``flush()`` wait for pending pages.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
#: Seconds before starting the worker thread is tried again after it failed (often "can't start new thread").
THREAD_RETRY = 1.0
#: The longest ``flush()`` or ``close()`` waits, whatever it is handed (``inf`` included): a day.
MAX_WAIT = 24 * 3600.0
#: Seconds between the worker's own looks while alerts wait that were not worth waking it for (repeats and
#: new kinds inside an open window, anything while nothing can go out): a flood wakes it a few times a second.
POLL = 0.25

_log = logging.getLogger("smn_alert")


def wait_seconds(timeout: object, default: float) -> float:
    """Return how long to wait for ``timeout`` as handed to ``flush()`` or ``close()``: any value is safe.

    None and nan mean ``default``; zero or less means not waiting; anything longer than :data:`MAX_WAIT`
    (``inf`` and numbers too big for a float included) means ``MAX_WAIT``. Not a number at all: ``default``.
    """
    try:
        seconds = float(default if timeout is None else timeout)  # type: ignore[arg-type]
    except OverflowError:  # an int beyond float's range
        seconds = math.inf
    except (TypeError, ValueError):
        seconds = math.nan
    if math.isnan(seconds):
        seconds = default if not math.isnan(default) else DEFAULT_SHUTDOWN_TIMEOUT
    return min(max(seconds, 0.0), MAX_WAIT)


class Dispatcher:
    """Takes alerts from any thread and pages them from one background thread.

    Args:
        sender: Sends one SMS text (SmsBatchPublish or topic).
        make_pager: Builds the decision state on the ledger it is given; called again in a forked child so
            it starts empty.
        capacity: Alerts the buffer holds; past it, ERRORs are counted as dropped. CRITICALs get a reserve
            of a tenth more, so a CRITICAL is never dropped to keep an ERROR.
        shutdown_timeout: Default deadline for ``flush()`` and ``close()`` (see :func:`wait_seconds`).
        clock: Monotonic clock for the pager's decisions.
        name: Name of the worker thread.
    """

    def __init__(
        self,
        sender: Sender,
        make_pager: Callable[[Ledger], Pager],
        *,
        capacity: int = DEFAULT_CAPACITY,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        name: str = "smn_alert",
    ) -> None:
        self._sender, self._make_pager = sender, make_pager
        self.capacity = capacity
        self.shutdown_timeout = wait_seconds(shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT)
        self._clock, self._name = clock, name
        self._closed = False
        self._at_exit = False  # closed by the interpreter's exit: an alert logged later is paged here
        self._sender_open = True
        self._reset()
        _process.register(self)
        # Started now, at construction: the first logger.error() must not pay for a thread start.
        self._start_worker()

    def _reset(self) -> None:
        """Fresh buffer, locks and pager: at construction and in a forked child."""
        self.pid = os.getpid()
        self._ledger = Ledger()  # every counter stats() reports: the pager's and the buffer's
        self._buffer = HandOver(self.capacity, self._ledger)
        self._put = self._buffer.put  # bound once: submit is the application's hot path
        self._fold = Fold()
        #: Fingerprint -> counter of the kinds the application thread only counts (see _fold); replaced whole.
        self.fold = self._fold.published
        # Re-entrant, as the stdlib handlers' locks: a signal handler that logs while this thread holds
        # one (a flush, the worker start) must not deadlock the process.
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._pager = self._make_pager(self._ledger)
        self._sharing = _sharing_of(self._pager)  # the processes paging the same people, if shared
        self._worker: Optional[threading.Thread] = None
        self.worker_ident: Optional[int] = None
        self._starting = False  # this thread is starting the worker (a re-entered submit must not)
        self._no_thread = False  # the last try to start the worker failed ...
        self._thread_failed_at = 0.0  # ... at this time.monotonic(); tried again a second later
        self._closing = False
        self._close_deadline = 0.0
        self._flushers = 0
        # (ended at, deadline, result) of the last flush() without timeout
        self._bare_flush = (0.0, 0.0, True)
        self._ran_out: Optional[tuple[float, int]] = None  # (when, received then): a flush out of time
        self._paging_late = False  # paging an alert logged after the exit-time close, on its thread
        self._late_pages = 0
        self._left_at_close = 0  # pending when close() ended: said then
        self._late_told = 0  # alerts logged after shutdown and not paged, said on stderr so far
        self._diagnostics = Diagnostics()  # fresh in a forked child too: its first trouble is said at once
        self._say = self._diagnostics.say  # a short name: the messages are long

    # --- application thread -------------------------------------------------------------------------
    def submit(self, alert: Alert, pid: Optional[int] = None) -> bool:
        """Hand ``alert`` to the worker without blocking; False when it could only be counted.

        Safe to re-enter from a signal handler or a ``__del__`` on the same thread: every lock on the way is
        re-entrant. ``pid`` is the process the alert was logged in, when the caller knows it (a
        ``LogRecord``'s ``process``): it spares a ``getpid()`` when looking for a fork from C.
        """
        if pid != self.pid:
            self._check_process()
        if not self._put(alert):
            return self._over_capacity(alert)
        if self._worker is None:
            self._start_worker()
        return True

    def _check_process(self) -> None:
        """Start afresh in a child forked without Python's fork hooks (uWSGI forks from C)."""
        if os.getpid() != self.pid:
            _process.forked_without_hooks()

    def _over_capacity(self, alert: Alert) -> bool:
        """Handle a full (or closed) buffer: admit a CRITICAL into the reserve, else count it as dropped."""
        if self._closed:
            return self._late(alert)
        if self._buffer.put_reserve(alert):
            if self._worker is None:
                self._start_worker()
            return True
        self._buffer.count_dropped(alert)
        return False

    def _start_worker(self) -> None:
        with self._lock:
            if self._starting:
                return  # being started by this thread, which a signal handler (or __del__) interrupted
            self._starting = True  # before looking: a call re-entered from here on returns above
            try:
                retry_at = self._thread_failed_at + THREAD_RETRY if self._no_thread else 0.0
                if self._worker is not None or time.monotonic() < retry_at:
                    return
                reason = self._try_start()
            finally:
                self._starting = False
        if reason:
            self._say("thread", "smn_alert could not start its thread (%s); flush() and close() send", reason)

    def _try_start(self) -> str:
        """Start the worker thread; return why it could not start, or ``""``."""
        worker = threading.Thread(target=self._run, name=self._name, daemon=True)
        try:
            worker.start()
        except RuntimeError as error:  # late in shutdown, or out of threads: page on callers' threads
            self._no_thread, self._thread_failed_at = True, time.monotonic()
            return str(error)
        self._worker, self.worker_ident, self._no_thread = worker, worker.ident, False
        return ""

    # --- after close: an alert logged by an exit hook that ran after ours ---------------------------
    def _late(self, alert: Alert) -> bool:
        """Page an alert logged after the exit-time close, within what is left of its deadline; else count it.

        An atexit hook registered before smn_alert was imported runs after smn_alert's own (atexit runs
        last in, first out): what it logs is paged before the hook goes on, as the close would have.
        """
        if self._at_exit and self._sender_open and time.monotonic() < self._close_deadline:
            return self._page_late(alert)
        self._buffer.count_dropped(alert, late=True)
        if self._at_exit:
            self._tell_late(summary=False)
        else:
            self._say("closed", "alerts logged after the SMN handler was closed are counted, not paged")
        return False

    def _page_late(self, alert: Alert) -> bool:
        """Send ``alert`` from a worker started again, waiting for it until the close deadline.

        Only if no thread can start is it sent on this thread (a hung send could then outlast the deadline).
        """
        self._buffer.put_late(alert)
        worker = self._worker
        if self._paging_late or (worker is not None and worker.is_alive()):
            return True  # being paged (re-entered, or another thread's): that worker takes it too
        self._paging_late = True
        try:
            self._worker = None
            self._start_worker()
            worker = self._worker
            if worker is None:
                self._pump_here(self._close_deadline)
            else:
                worker.join(max(0.0, self._close_deadline - time.monotonic()))
        finally:
            self._paging_late = False
            self._late_pages += 1
        self._tell_late(summary=False)
        return True

    def _tell_late(self, *, summary: bool) -> None:
        """Say on stderr (logging may be shut down) how many alerts logged after shutdown were not paged.

        The first at once; more only in a summary (``logging.shutdown()`` flushing and closing us), so a
        loop of errors in an exit hook does not flood stderr.
        """
        with self._lock:
            unpaged = self._ledger.late + max(0, self._pending() - self._left_at_close)
        if unpaged > self._late_told and (summary or self._late_told == 0):
            self._late_told = unpaged
            were = "alert logged after shutdown was" if unpaged == 1 else "alerts logged after shutdown were"
            tell_stderr(f"smn_alert: {unpaged} {were} not paged")

    # --- worker thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        with _guards.worker_thread():
            while True:
                try:
                    if not self._step():
                        return
                except Exception:  # a bug must not stop paging: say it, breathe, carry on (like sentry's)
                    self._say("bug", "smn_alert's worker hit an unexpected error; it carries on", exc=True)
                    self._buffer.wait(1.0)

    def _step(self, *, wait: bool = True) -> bool:
        """One pass: wait for work or a deadline, take what is due, send it. False when closing is done."""
        if wait:
            self._buffer.wait(self._sleep_time())
        if self._closing:
            with self._lock:
                if self._done_closing():
                    self._settled.notify_all()
                    return False
        page = self._take()
        if page is not None:
            self._settle(page, self._send(page))
        with self._lock:
            self._settled.notify_all()
            return not (self._closing and self._done_closing())

    def _done_closing(self) -> bool:
        """Tell whether closing is done (see :meth:`_finished`).

        With shared state, only once this process told the others it leaves (the last one sends what is
        pending) and gave back the claimed digests it could not send.
        """
        if not self._finished() or self._leave_last():
            return False
        if self._sharing is not None:
            self._sharing.release(self._pager)
        return True

    def _leave_last(self) -> bool:
        """Tell the others this process leaves (closing); True if it is the last and has their digest to send.

        Only the last live process for a target sends what is pending (within the close deadline).
        """
        sharing = self._sharing
        if sharing is None or sharing.left:
            return False
        in_time = time.monotonic() < self._close_deadline  # never start a send after the deadline
        # What the budget or the circuit holds goes to the store for the next process: the claimed digests
        # first, so that this process's own alerts (maybe in the same lines) can follow them there.
        sharing.release(self._pager)
        self._pager.hand_waiting()
        return sharing.leave(self._pager, self._clock(), claim=in_time) and in_time

    def _sleep_time(self) -> Optional[float]:
        """Return seconds to the pager's next deadline (None: until woken), capped by the close deadline."""
        with self._lock:
            now = self._clock()
            closing = self._closing
            # Closing sends at once what may go: wake when the circuit or a backoff allows, not at the
            # folding window's end.
            final = self._may_overspend()
            wakeup = self._pager.blocked_until(now, final=final) if closing else self._pager.next_wakeup(now)
        delay = None if wakeup is None else max(0.0, wakeup - now)
        buffer = self._buffer
        # Alerts that did not wake us (or may come without waking us: a window is open, or nothing can go
        # out), or counters to read: look on our own, a few times a second.
        if buffer.queued or buffer.wake_above >= 0 or self._fold.retiring:
            delay = POLL if delay is None else min(delay, POLL)
        if self._sharing is not None:  # counts to push, digests to claim, a heartbeat: once a second
            every = self._sharing.fleet.sync_interval
            delay = every if delay is None else min(delay, every)
        if closing:
            left = max(0.0, self._close_deadline - time.monotonic())
            delay = left if delay is None else min(delay, left)
        return delay

    def _take(self) -> Optional[Page]:
        with self._lock:
            now = self._clock()
            self._drain(now)
            closing = self._closing
            override = self._may_overspend()
            if self._sharing is not None:  # first: a claimed digest, the fleet's pause, counts pushed
                self._sharing.step(self._pager, now, closing=closing, flushing=self._flushers > 0)
            late = closing and time.monotonic() >= self._close_deadline  # the step's I/O took the time left
            page = None if late else self._pager.take_due(now, force=closing or self._flushers > 0,
                                                          override_budget=override)  # fmt: skip
            if page is not None:
                self._sync_fold(now)  # the window it opens: its kinds are counted from now on
            self._buffer.wake_above = self._pager.wake_level(now)
        if page is not None and page.trouble:
            self._say("compose", "%s", page.trouble)
        return page

    def _drain(self, now: float) -> None:
        buffer, pager = self._buffer, self._pager
        for alert in buffer.take_alerts():
            pager.add(alert, now)
        count, kinds = buffer.take_dropped()
        self._tell(pager.add_overflow(count, kinds, self.capacity, now))
        self._sync_fold(now)

    def _sync_fold(self, now: float) -> None:
        """Publish the kinds the application thread may only count, and take what it counted."""
        fold = self._fold
        if fold.publish({} if self._closing else self._pager.fold_kinds(now), time.monotonic()):
            self.fold = fold.published
        for sample, count, seen in fold.take(time.monotonic()):
            self._pager.add_counted(sample, count, now, seen=seen)

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
            if self._sharing is not None:  # ack a claimed digest; pause or resume the other processes
                recovered = note is not None and note[0] == "recovered"
                self._sharing.settled(self._pager, page.claims, outcome, recovered)
        self._tell(note)

    def _tell(self, note: Optional[Note]) -> None:
        """Log a note the pager worded (rate-limited by kind, except a lost alert and a recovery)."""
        if note is not None:
            kind, text = note
            level = logging.INFO if kind == "recovered" else logging.WARNING
            self._say(kind, "%s", text, always=kind in ("undelivered", "recovered"), level=level)

    def _finished(self) -> bool:
        """Tell whether closing is done: nothing is left, or nothing more can go before the deadline.

        What is left stays counted as pending: the deadline passed, or an open circuit (or a backoff)
        will not let a page out before it, so waiting would only delay the application's exit.
        """
        remaining = self._close_deadline - time.monotonic()
        if not self._pending() or remaining <= 0:
            return True
        now = self._clock()
        blocked = self._pager.blocked_until(now, final=self._may_overspend())
        return blocked is not None and blocked - now > remaining

    def _may_overspend(self) -> bool:
        """Tell whether the next page may overspend the budget: the last at shutdown, and one after it.

        Never the fleet's budget: what it cannot pay for stays in the store for the next process of the
        target (a crash-looping service must not page once per restart).
        """
        if self._sharing is not None and not self._sharing.fleet.degraded:
            return False
        return self._closing and self._late_pages == 0  # counted when a late paging ends

    def _pending(self) -> int:
        """Return the alerts not resolved yet.

        In the buffer, counted while it was full, in the pager, handed but not in the shared state yet, and
        the fleet's on a digest claimed here.
        """
        pending = self._buffer.queued + self._fold.unread + self._pager.pending + self._pager.claimed
        return pending + (self._sharing.unsent if self._sharing is not None else 0)

    def say_trouble(self, key: str, message: str, *args: object) -> None:
        """Report a problem of an adapter (handler, processor) the same rate-limited way as our own."""
        self._diagnostics.say(key, message, *args)

    # --- control ------------------------------------------------------------------------------------
    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send what is pending now, waiting at most ``timeout`` seconds (default ``shutdown_timeout``).

        Any value is safe (see :func:`wait_seconds`): None or nan wait ``shutdown_timeout``, zero or less
        does not wait, ``inf`` waits at most :data:`MAX_WAIT`. Returns True when nothing is left pending.
        Returns early (False) when what is left cannot go out before the deadline: the SMS budget is spent
        or the circuit is open.
        """
        self._check_process()
        deadline = time.monotonic() + wait_seconds(timeout, self.shutdown_timeout)
        if self._closed:  # logging.shutdown() flushes after our atexit closed us: share that deadline
            deadline = min(deadline, self._close_deadline)
            if self._at_exit:
                self._tell_late(summary=True)
        result = self._flush_until(deadline)
        if not result and time.monotonic() >= deadline:  # ran out of time: close will not wait again
            self._ran_out = (time.monotonic(), self._received())
        if timeout is None:
            self._bare_flush = (time.monotonic(), deadline, result)
        return result

    def _flush_until(self, deadline: float) -> bool:
        if self._buffer and self._worker is None:
            self._start_worker()
        if self._no_thread:
            self._pump_here(deadline)
            return self.stats()["pending"] == 0
        with self._lock:
            self._flushers += 1
            try:
                return self._wait_until_empty(deadline)
            finally:
                self._flushers -= 1

    def _wait_until_empty(self, deadline: float) -> bool:
        while True:
            self._buffer.poke()  # even when we give up early, the worker looks once (and notes a hold)
            if not self._pending():
                return True
            remaining = deadline - time.monotonic()
            now = self._clock()
            blocked = self._pager.blocked_until(now)
            stuck = self._worker is None or not self._worker.is_alive()
            if remaining <= 0 or stuck or (blocked is not None and blocked - now > remaining):
                return False
            self._settled.wait(min(remaining, 0.1))

    def close(self, timeout: Optional[float] = None) -> None:
        """Send what is pending within ``timeout`` (default: see :meth:`_close_time`), then stop; idempotent.

        Any ``timeout`` is safe, as for :meth:`flush`.
        """
        if self._closed:
            self._after_closed()
            return
        self.begin_close(timeout)
        self.finish_close()

    def _close_time(self) -> float:
        """Seconds for a bare ``close()``: ``shutdown_timeout``, or less if a flush just spent it.

        One process, one deadline. A flush that ran out of time (in gunicorn's ``worker_exit``, Celery's
        ``worker_process_shutdown``) leaves nothing for the close that follows to wait for again, unless
        alerts came since. ``logging.shutdown()`` calls ``flush()`` then ``close()``: a bare flush that gave
        up early (budget, circuit) leaves the close what is left of its deadline.
        """
        now = time.monotonic()
        if self._ran_out is not None:
            ended, received = self._ran_out
            if now - ended < max(1.0, self.shutdown_timeout) and received == self._received():
                return 0.0
        ended, deadline, result = self._bare_flush
        if not result and now - ended < 1.0:
            return max(0.5, deadline - now)
        return self.shutdown_timeout

    def begin_close(self, timeout: Optional[float] = None, *, at_exit: bool = False) -> None:
        """Tell the worker to send everything now and stop (half of ``close``, for closing many at once).

        ``at_exit``: the interpreter is exiting; an alert logged after this (by an exit hook that runs
        after ours) is paged on its own thread within what is left of the deadline.
        """
        self._check_process()
        seconds = self._close_time() if timeout is None else wait_seconds(timeout, self.shutdown_timeout)
        with self._lock:
            self._closed = True
            self._closing = True
            self._at_exit = at_exit
            self._buffer.close()  # every later submit takes the slow path, which counts it
            self._fold.publish({}, time.monotonic())  # ... and no repeat is only counted any more
            self.fold = self._fold.published
            self._pager.expedite()
            self._close_deadline = time.monotonic() + seconds
        self._buffer.poke()

    def finish_close(self) -> None:
        """Wait for the worker until the deadline; without a worker, page on the calling thread."""
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, self._close_deadline - time.monotonic()))
        elif worker is None and self._buffer.queued:
            self._pump_here(self._close_deadline)
        with self._lock:
            left = self._left_at_close = self._pending()
        if left:
            _log.warning("smn_alert: %d alerts were not paged before shutdown", left)
        if not self._at_exit:  # at exit, kept for an alert an exit hook logs after us (see _late)
            self._close_sender()

    def _after_closed(self) -> None:
        """Close the sender kept open at exit, and tell what was not paged (``logging.shutdown()``)."""
        if self._at_exit:
            self._tell_late(summary=True)
        self._close_sender()

    def _close_sender(self) -> None:
        if self._sender_open:
            self._sender_open = False
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
        self._check_process()
        with self._lock:
            queued = self._buffer.queued + self._fold.unread
            return self._ledger.stats(queued=queued, pending=self._pager.pending)

    def _received(self) -> int:
        with self._lock:
            return self._ledger.total_received(self._buffer.queued + self._fold.unread)

    def fleet_status(self) -> Optional[dict[str, Any]]:
        """Return the fleet's view of the shared state, or None when nothing is shared.

        The view: window, counts waiting, budget left, circuit, live processes and hosts, and this process's
        side of it (degraded, unsent, round trips). None with ``shared_state="process"``.
        """
        self._check_process()
        with self._lock:
            return None if self._sharing is None else self._sharing.status()

    @property
    def closed(self) -> bool:
        """Tell whether closing has begun: later alerts are counted as dropped, never paged."""
        return self._closed

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child, without the parent's pending alerts, worker or locks."""
        if self.pid == os.getpid():
            return  # made in this very process (a child forked from C made it before noticing the fork)
        self._reset()  # even a closed one: its locks may have been held by a thread that is gone
        if not self._closed:
            # From the fork hook: the child's worker starts now, not on its first alert. (A child forked
            # from C skips the hook: the first alert it logs notices the fork and starts the worker then.)
            self._start_worker()


def _sharing_of(pager: Pager) -> Optional[Sharing]:
    """Return the pager's link to the processes sharing state, or None when it pages alone."""
    if pager.share is None:
        return None
    from smn_alert._sharing import Sharing

    return pager.share if isinstance(pager.share, Sharing) else None
