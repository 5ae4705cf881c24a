"""The loop guards: what must never page, in one place.

Three guards keep a pager from paging about paging, or paging one event twice:

- **ignored loggers**: smn_alert's own logger and its HTTP stack's (``urllib3``, ``requests``), plus any an
  application names with :func:`ignore_logger`; their records, and their children's, never page;
- **worker threads**: what smn_alert's own worker threads log never pages, through any handler or
  processor (two pagers must not page each other's trouble);
- **the paged mark**: an event an ``SMNProcessor`` paged is remembered on its thread, so an ``SMNHandler``
  behind structlog's ``ProcessorFormatter`` does not page it a second time.

A leaf module: it imports nothing of smn_alert's, so every adapter and the process machinery can use it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Optional

#: Loggers (and their children) whose events never page out of the box: they would page about paging.
BUILTIN_IGNORED = ("smn_alert", "urllib3", "requests")
#: Logger names whose decision is remembered at most; past it, names are decided each time (still right).
MAX_DECISIONS = 4096
# Keys structlog's render_to_log_kwargs passes as logging arguments rather than as record attributes.
_KWARG_KEYS = frozenset({"event", "exc_info", "stack_info", "stacklevel"})


# --- ignored loggers ---------------------------------------------------------------------------------
class _Ignored:
    """The ignored roots, replaced whole (a tuple) so that a reader sees one list or the other."""

    roots: tuple[str, ...] = BUILTIN_IGNORED


_ignored = _Ignored()
#: The ignored roots' holder: ``IGNORED.roots`` is a new tuple after each :func:`ignore_logger`, so a
#: decision taken under one tuple (SMNHandler remembers one) is known to be current while it is the same.
IGNORED = _ignored
#: Logger name -> ignored? Read directly by SMNHandler.accepts (the hot path); cleared, never rebound, when
#: :func:`ignore_logger` adds a name, so every holder of this dict sees the change at once.
DECISIONS: dict[str, bool] = {}
_lock = threading.Lock()  # only ignore_logger takes it (never the logging path)


def ignore_logger(name: str) -> None:
    """Never page records of logger ``name`` or of its children (``"noisy.lib"`` covers ``"noisy.lib.db"``).

    For a library whose errors are not worth waking anyone for, or one that logs about its own
    alerting. Applies to every ``SMNHandler`` and ``SMNProcessor`` in the process, from the next record on;
    calling it again with the same name does nothing. smn_alert's own logger, ``urllib3`` and ``requests``
    are always ignored (paging about a failed page would loop).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is empty (the root logger is ``"root"``, and ignoring it would page nothing).
    """
    if not isinstance(name, str):
        raise TypeError(f"ignore_logger() takes a logger name, not {type(name).__name__}")
    if not name:
        raise ValueError("ignore_logger() needs a logger name; an empty one would silence everything")
    with _lock:
        if name not in _ignored.roots:
            _ignored.roots = (*_ignored.roots, name)
            DECISIONS.clear()


def is_ignored_logger(name: str) -> bool:
    """Tell whether records of logger ``name`` must never page; remembered per name."""
    ignored = DECISIONS.get(name)
    if ignored is None:
        roots = _ignored.roots
        ignored = any(name == root or name.startswith(root + ".") for root in roots)
        # Remembered unless the list changed meanwhile (its cache was cleared: this decision may be stale).
        if roots is _ignored.roots and len(DECISIONS) < MAX_DECISIONS:
            DECISIONS[name] = ignored
    return ignored


# --- worker threads ----------------------------------------------------------------------------------
#: Idents of every dispatcher's worker thread: what they log never pages, through any handler or processor.
#: Changed in place, never rebound: the adapters' hot paths read it directly (``ident in WORKERS``).
WORKERS: set[int] = set()


@contextlib.contextmanager
def worker_thread() -> Iterator[None]:
    """Mark the calling thread as a worker (its logging must not page) until the block ends."""
    ident = threading.get_ident()
    WORKERS.add(ident)
    try:
        yield
    finally:
        WORKERS.discard(ident)


def on_worker_thread() -> bool:
    """Tell whether the calling thread is one of smn_alert's workers (its logging must not page)."""
    return threading.get_ident() in WORKERS


def is_worker(ident: Optional[int]) -> bool:
    """Tell whether thread ``ident`` (a record's ``thread``; None when not recorded) is a worker."""
    return ident in WORKERS


def forget_workers() -> None:
    """Forget every worker thread: in a forked child, the parent's threads do not exist."""
    WORKERS.clear()


# --- one page per event: the structlog processor marks what it paged, the handler skips it -------------
class _PagedMark(threading.local):
    """The last event an SMNProcessor paged on this thread: ``(event dict, its text, its keys then)``.

    One tuple, stored and read in one step (the class default makes a miss cheap).
    """

    mark: Optional[tuple[Mapping[str, Any], object, tuple[object, ...]]] = None


_paged = _PagedMark()


class _Built:
    """Whether an adapter of this kind was made (in this process): a flag its counterpart reads cheaply."""

    built = False


#: Whether any ``SMNHandler`` was built: only then is the paged mark worth making (SMNProcessor reads it).
HANDLERS = _Built()
#: Whether any event was ever marked paged: until then SMNHandler skips :func:`was_paged`.
MARKS = _Built()


def handler_built() -> None:
    """Say that an ``SMNHandler`` exists: from now on an ``SMNProcessor`` marks the events it pages."""
    HANDLERS.built = True


def mark_paged(event_dict: Mapping[str, Any]) -> None:
    """Remember, for this thread, that ``event_dict`` has been paged by an ``SMNProcessor``.

    The event dict itself is not changed (a renderer would print any key we added). structlog hands the
    same dict to stdlib logging on the same thread, so an identity check there is exact. For
    ``render_to_log_kwargs`` (which pops the event text out of the dict) the text and the other keys are
    remembered too: those keys come back as attributes of the record.
    """
    _paged.mark = (event_dict, event_dict.get("event"), tuple(event_dict))  # keys sifted when read
    MARKS.built = True


def was_paged(record: logging.LogRecord) -> bool:
    """Tell whether ``record`` carries the event an ``SMNProcessor`` just paged on this thread.

    The first record that is not that event clears the mark, so a later stdlib error that merely reads
    the same is still paged.
    """
    mark = _paged.mark
    if mark is None:
        return False
    event, text, keys = mark
    msg = record.msg
    if msg is event:  # ProcessorFormatter: the very dict (kept marked for a second SMNHandler)
        return True
    attributes = record.__dict__
    if (
        isinstance(msg, str)
        and msg == text
        and all(key in attributes for key in keys if isinstance(key, str) and key not in _KWARG_KEYS)
    ):
        return True  # render_to_log_kwargs: the text, with the event's other keys as attributes
    _paged.mark = None
    return False
