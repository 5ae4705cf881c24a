"""``SMNHandler``: a ``logging.Handler`` that pages serious records by SMS through SMN.

A thin adapter: ``emit`` counts a repeat the worker is folding (see :mod:`smn_alert._fold`), or snapshots the
record into an :class:`~smn_alert._alert.Alert` and hands it to the dispatcher without blocking; everything
else (folding, budget, text, sending) happens on the worker thread. It subclasses ``logging.Handler``, not
``QueueHandler``, because ``dictConfig`` special-cases the latter.

``dictConfig`` imports this module to resolve the class, so it imports only what ``emit`` needs; the
settings, the pipeline and the snapshot code load when a handler is built.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from threading import get_ident
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from smn_alert import _guards
from smn_alert._guards import DECISIONS, IGNORED, MARKS, WORKERS, is_ignored_logger, was_paged

if TYPE_CHECKING:
    from smn_alert._senders import Sender

# What Handler.handle returns for a record that passed no filters: the record itself from Python 3.12 on.
_RECORD_RETURNED = sys.version_info >= (3, 12)


class SMNHandler(logging.Handler):
    """Pages on-call people by SMS when a record at ``level`` or above is logged.

    Args:
        endpoints: Phone numbers (a list, or one comma-separated string); or give ``topic_urn`` instead.
        level: Lowest level that pages (default ``ERROR``).
        sender: For tests: a :class:`~smn_alert._senders.Sender` used instead of SMN.
        clock: For tests: the monotonic clock the pipeline decides by.
        wall: For tests: the wall clock that dates "held back since HH:MM".
        **settings: Every other setting, as plain values (see the README's settings table): connection
            (``project_id``, ``region``, ``endpoint_url``, ``ak``, ``sk``, ...), ``topic_urn``, ``sign_id``,
            ``prefix``, ``max_length``, ``budget``, ``budget_period``, ``window``, ``capacity``,
            ``shutdown_timeout``, ``redact_patterns`` ... Unset ones come from the environment.

    Raises:
        ValueError: A setting is missing or wrong (the message names it); raised here, at start-up.
    """

    def __init__(
        self,
        endpoints: Union[str, list[str], tuple[str, ...], None] = None,
        *,
        level: Union[int, str] = logging.ERROR,
        sender: Optional[Sender] = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **settings: Any,
    ) -> None:
        from smn_alert._alert import Alert, quick_fingerprint
        from smn_alert._build import build_dispatcher
        from smn_alert._settings import PagerSettings, check_level

        if endpoints is not None:
            settings["endpoints"] = endpoints
        # Validate and build everything before logging.Handler registers us: a refused configuration
        # must not leave a half-made handler for logging.shutdown() to trip over at exit.
        checked = PagerSettings.from_kwargs(**settings)
        levelno = check_level(level)  # a bad level is the same SMNConfigError as any bad setting
        dispatcher = build_dispatcher(
            checked, sender=sender, clock=clock, wall=wall, name="smn_alert-handler"
        )
        super().__init__(levelno)
        self.settings, self._dispatcher = checked, dispatcher
        self._snapshot, self._fingerprint = Alert.from_record, quick_fingerprint  # emit imports nothing
        #: (fold, template, logger name, level, pid, ignored roots, tally) of the kind counted last.
        self._last: tuple[Any, ...] = (None, None, None, -1, -1, None, None)
        _guards.handler_built()  # from now on an SMNProcessor marks what it pages, for us to skip

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter and emit ``record`` without the handler lock: ``emit`` is thread-safe and never blocks.

        A repeat of the kind counted last is counted right here (the commonest call, kept short): same
        template object, logger and level, no exception, same process, fold and ignored loggers as when it
        was remembered, logged on a thread that is not a worker, and no paged mark ever made.
        """
        if self.filters:
            result = self.filter(record)
            if result:
                self.emit(result if isinstance(result, logging.LogRecord) else record)
            return result
        try:
            fold, msg, name, levelno, pid, roots, tally = self._last
            if (
                msg is record.msg
                and name is record.name
                and levelno == record.levelno
                and pid == record.process
                and fold is self._dispatcher.fold
                and roots is IGNORED.roots  # its logger was not ignored, and no name was added since
                and not record.exc_info
                and not MARKS.built
                and record.thread not in WORKERS
                and record.thread is not None
            ):
                if next(tally.counter):  # atomic, lock-free, re-entrant
                    tally.last = record.created  # one attribute store: when, for the digest's span
                else:  # the first on a fresh counter (0) is snapshotted
                    self._dispatcher.submit(self._snapshot(record), pid)
            else:
                self.emit(record)
        except Exception:
            self.handleError(record)
        return record if _RECORD_RETURNED else True

    def emit(self, record: logging.LogRecord) -> None:
        """Count ``record`` if it is a repeat being folded, else snapshot it for the worker; never raises.

        First the loop guards (:mod:`smn_alert._guards`), read inline to keep the call cheap: a worker's
        record, an ignored logger's, or one an SMNProcessor already paged is refused. The thread that made
        the record is the one handling it unless a relay (a ``QueueListener``) hands it over; smn_alert's
        workers relay nothing, so the calling thread is looked at only when the record does not say its own.
        """
        try:
            thread = record.thread
            if thread is None:
                thread = get_ident()
            # Any smn_alert worker's thread, ours or another pager's: two pagers must not page each other.
            if thread in WORKERS and self._from_worker(record):
                return
            self._count_or_submit(record)
        except Exception:
            self.handleError(record)

    def _count_or_submit(self, record: logging.LogRecord) -> None:
        """Apply the other guards, then count a repeat being folded (its kind remembered) or submit it."""
        roots = IGNORED.roots  # read before deciding: a name ignored meanwhile makes the memory stale
        ignored = DECISIONS.get(record.name)  # the guards' own cache
        if ignored if ignored is not None else is_ignored_logger(record.name):
            return
        if MARKS.built and was_paged(record):  # no mark made yet: no SMNProcessor paged anything
            return
        dispatcher, process = self._dispatcher, record.process
        if process is None:  # logging.logProcesses is off
            process = os.getpid()
        if process == dispatcher.pid:  # not a child forked from C (its counts go nowhere)
            fold = dispatcher.fold
            tally = fold.get(self._fingerprint(record))
            if tally is not None and not record.exc_info:  # remembered in one step (safe to re-enter)
                self._last = (fold, record.msg, record.name, record.levelno, process, roots, tally)
            if tally is not None and next(tally.counter):  # atomic, lock-free, re-entrant
                tally.last = record.created
                return  # counted; the first on a fresh counter (0) is snapshotted
        dispatcher.submit(self._snapshot(record), process)

    @staticmethod
    def _from_worker(record: logging.LogRecord) -> bool:
        """Tell whether a record carrying a worker's thread id was logged by (or is handled on) a worker.

        A record from another process, relayed by a ``QueueListener``, may carry a worker's thread id.
        """
        return record.process == os.getpid() or get_ident() in WORKERS

    def flush(self, timeout: Optional[float] = None) -> bool:  # type: ignore[override]
        """Wait until pending alerts are sent, at most ``timeout`` seconds (default ``shutdown_timeout``).

        Any value is safe: None or nan wait ``shutdown_timeout``, zero or less does not wait, and ``inf``
        (or anything above a day) waits at most a day.

        Returns:
            True when nothing is left pending.
        """
        return self._dispatcher.flush(timeout)

    def close(self) -> None:
        """Send what is pending within ``shutdown_timeout``, then stop the worker; safe to call twice."""
        try:
            self._dispatcher.close()
        finally:
            super().close()

    def stats(self) -> dict[str, object]:
        """Counters: received, sent, folded, suppressed, dropped, failed, pending, handed, pages, ..."""
        return self._dispatcher.stats()

    def fleet_status(self) -> Optional[dict[str, Any]]:
        """Return what the processes paging the same people share (None with ``shared_state="process"``).

        Window, counts waiting, budget left, circuit, live processes and hosts, and this process's side
        (degraded, unsent, round trips). It asks the store: call it from a status page, not per request.
        """
        return self._dispatcher.fleet_status()

    def __repr__(self) -> str:
        from smn_alert._smn import mask_number

        level = logging.getLevelName(self.level)
        settings = self.settings
        if settings.mode == "topic":
            target = f"topic {settings.topic_urn}"
        else:
            target = "sms to " + ", ".join(mask_number(n) for n in settings.endpoints)
        return f"<{type(self).__name__} ({level}) {target}>"
