"""``SMNProcessor``: a structlog processor that pages serious events by SMS through SMN.

It does not import structlog: a processor is any callable ``(logger, method_name, event_dict) -> event_dict``.
It snapshots events at or above its level, hands them to its dispatcher, and returns the event dict unchanged,
so it can sit anywhere in the chain. Events it paged are remembered for the current thread, so an
``SMNHandler`` behind structlog's ``ProcessorFormatter`` does not page them a second time.

The page reads as the log line will: ``positional_args`` (``log.error("user=%s", name)`` through
``structlog.stdlib.BoundLogger``) are applied as ``PositionalArgumentsFormatter`` will apply them, even when
that formatter comes later in the chain, so the arguments go through redaction with the text around them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from os import getpid
from threading import get_ident
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from smn_alert._guards import DECISIONS, HANDLERS, IGNORED, WORKERS, is_ignored_logger, mark_paged

if TYPE_CHECKING:
    from smn_alert._senders import Sender

_LEVELS = {
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "exception": logging.ERROR,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "msg": logging.INFO,
    "debug": logging.DEBUG,
    "notset": logging.NOTSET,
}
#: The module of structlog's own output loggers (``PrintLogger``, ``WriteLogger``, ``BytesLogger``): they
#: write to a file, never to stdlib logging, so no SMNHandler can see their events (no paged mark needed).
_STRUCTLOG_OUTPUT = "structlog._output"
#: Logger class -> whether its events may reach stdlib logging (and so need the paged mark); bounded.
_MARK_NEEDED: dict[type, bool] = {}
_MAX_CLASSES = 64
_NAMES = {logging.CRITICAL: "CRITICAL", logging.ERROR: "ERROR", logging.WARNING: "WARNING",
          logging.INFO: "INFO", logging.DEBUG: "DEBUG"}  # fmt: skip


def _levelno(level: object) -> Optional[int]:
    """Return the numeric level of a structlog level name (any case) or number; None for anything else."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        return _LEVELS.get(level.strip().lower())
    return None


def _reaches_stdlib(logger: object) -> bool:
    """Tell whether events of ``logger`` may reach stdlib logging: all but structlog's own output loggers'."""
    kind = type(logger)
    needed = _MARK_NEEDED.get(kind)
    if needed is None:
        needed = getattr(kind, "__module__", None) != _STRUCTLOG_OUTPUT  # a subclass elsewhere may forward
        if len(_MARK_NEEDED) < _MAX_CLASSES:
            _MARK_NEEDED[kind] = needed
    return needed


class SMNProcessor:
    """Pages structlog events at ``level`` or above; returns every event dict unchanged.

    Args:
        endpoints: Phone numbers (a list, or one comma-separated string); or give ``topic_urn`` instead.
        level: Lowest level that pages, a name (``"error"``) or a number (default ``"error"``).
        sender: For tests: a :class:`~smn_alert._senders.Sender` used instead of SMN.
        clock: For tests: the monotonic clock the pipeline decides by.
        wall: For tests: the wall clock that dates "held back since HH:MM".
        **settings: The same settings as :class:`~smn_alert._handler.SMNHandler`.

    Raises:
        ValueError: A setting is missing or wrong (the message names it).
    """

    def __init__(
        self,
        endpoints: Union[str, list[str], tuple[str, ...], None] = None,
        *,
        level: Union[int, str] = "error",
        sender: Optional[Sender] = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **settings: Any,
    ) -> None:
        from smn_alert._alert import Alert, quick_event_fingerprint
        from smn_alert._build import build_dispatcher
        from smn_alert._settings import PagerSettings, check_level

        levelno = _levelno(level)  # structlog's own names first ("exception", "warn") ...
        self.levelno = check_level(level) if levelno is None else levelno  # ... then logging's, or refused
        if endpoints is not None:
            settings["endpoints"] = endpoints
        self.settings = PagerSettings.from_kwargs(**settings)
        self._dispatcher = build_dispatcher(
            self.settings, sender=sender, clock=clock, wall=wall, name="smn_alert-processor"
        )
        self._snapshot, self._fingerprint = Alert.from_event_dict, quick_event_fingerprint
        #: (fold, event text, logger name, level, pid, ignored roots, tally) of the kind counted last.
        self._last: tuple[Any, ...] = (None, None, None, -1, -1, None, None)

    @property
    def levelno(self) -> int:
        """The lowest level that pages."""
        return self._levelno

    @levelno.setter
    def levelno(self, levelno: int) -> None:
        self._levelno = levelno
        #: add_log_level's names of the levels below ours: an event named so returns at once (not "notset":
        #: an event at level 0 is judged by its method's name).
        self._quiet = frozenset(name for name, number in _LEVELS.items() if 0 < number < levelno)

    def __call__(self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        """Page ``event_dict`` if it is serious enough; always return it unchanged."""
        try:
            if event_dict.get("level") in self._quiet:  # an info event: the commonest call, one lookup
                return event_dict
        except Exception:  # an unhashable level (judged below), or a get() that raises (said below)
            pass
        try:
            level = event_dict.get("level")
            levelno = _LEVELS.get(level) if type(level) is str else None  # add_log_level's names: one lookup
            if not levelno:
                levelno = _levelno(level) or _levelno(method_name)
            if levelno is None or levelno < self._levelno or get_ident() in WORKERS:
                return event_dict  # below the level (an info event), or a worker's own logging
            # Only an SMNHandler reads the mark (behind ProcessorFormatter or render_to_log_kwargs).
            if self._page(logger, event_dict, levelno) and HANDLERS.built and _reaches_stdlib(logger):
                mark_paged(event_dict)
        except Exception as error:  # a pager must never break the application's logging call
            reason = type(error).__name__  # not the message: it may quote the event's content
            self._dispatcher.say_trouble("processor", "SMNProcessor could not page an event: %s", reason)
        return event_dict

    def _page(self, logger: object, event_dict: MutableMapping[str, Any], levelno: int) -> bool:
        """Count the event if it is a repeat being folded, else snapshot it; False for an ignored logger.

        A repeat of the kind counted last (same event text object, logger and level, no exception; same
        process, published fold and ignored loggers as when it was remembered) skips the guards' cache,
        the fingerprint and the lookup.
        """
        name = event_dict.get("logger") or event_dict.get("logger_name") or getattr(logger, "name", None)
        if not isinstance(name, str):
            name = "structlog"
        pid = getpid()  # once per paged event: a child forked from C must not count into the parent's fold
        fold, event, last_name, last_level, last_pid, roots, tally = self._last
        if (
            event is event_dict.get("event")
            and name is last_name
            and levelno == last_level
            and pid == last_pid
            and fold is self._dispatcher.fold
            and roots is IGNORED.roots  # its logger was not ignored, and no name was added since
            and not event_dict.get("exc_info")
            and not event_dict.get("exception")
        ):
            if next(tally.counter):  # atomic, lock-free, re-entrant
                return True  # counted (dated when read)
            return self._submit(event_dict, name, levelno, pid)  # the first on a fresh counter
        return self._count_or_submit(event_dict, name, levelno, pid)

    def _count_or_submit(
        self, event_dict: MutableMapping[str, Any], name: str, levelno: int, pid: int
    ) -> bool:
        """Apply the ignored-logger guard, then count a repeat being folded (kind remembered) or submit."""
        roots = IGNORED.roots  # read before deciding: a name ignored meanwhile makes the memory stale
        ignored = DECISIONS.get(name)  # the guards' own cache, read here to keep the call cheap
        if is_ignored_logger(name) if ignored is None else ignored:
            return False
        dispatcher = self._dispatcher
        if pid == dispatcher.pid:
            fold = dispatcher.fold
            tally = fold.get(self._fingerprint(event_dict, name, levelno))
            if tally is not None and not event_dict.get("exc_info") and not event_dict.get("exception"):
                self._last = (fold, event_dict.get("event"), name, levelno, pid, roots, tally)  # one step
            if tally is not None and next(tally.counter):  # atomic, lock-free, re-entrant
                return True  # counted (dated when read); the first on a fresh counter is snapshotted
        return self._submit(event_dict, name, levelno, pid)

    def _submit(self, event_dict: MutableMapping[str, Any], name: str, levelno: int, pid: int) -> bool:
        levelname = _NAMES.get(levelno) or f"LEVEL{levelno}"
        self._dispatcher.submit(self._snapshot(event_dict, name, levelno, levelname), pid)
        return True

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until pending alerts are sent, at most ``timeout`` seconds; True when none are left."""
        return self._dispatcher.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Send what is pending within the timeout, then stop the worker; safe to call twice."""
        self._dispatcher.close(timeout)

    def stats(self) -> dict[str, object]:
        """Return the same counters as ``SMNHandler.stats()``."""
        return self._dispatcher.stats()

    def fleet_status(self) -> Optional[dict[str, Any]]:
        """Return the shared state's view, as ``SMNHandler.fleet_status()``."""
        return self._dispatcher.fleet_status()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} level={self.levelno} mode={self.settings.mode}>"
