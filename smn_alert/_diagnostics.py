"""smn_alert's own trouble on the ``smn_alert`` logger: rate-limited, and without logging's module lock."""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

#: Seconds between two diagnostics of the same kind on the ``smn_alert`` logger.
DIAGNOSTIC_INTERVAL = 60.0

_log = logging.getLogger("smn_alert")


class Diagnostics:
    """Says smn_alert's own trouble, at most once per key per ``DIAGNOSTIC_INTERVAL``.

    Args:
        clock: Monotonic clock the interval is measured with.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_said: dict[str, float] = {}

    def say(
        self,
        key: str,
        message: str,
        *args: object,
        always: bool = False,
        level: int = logging.WARNING,
        exc: bool = False,
    ) -> None:
        """Log smn_alert's own trouble, at most once per key per ``DIAGNOSTIC_INTERVAL`` unless ``always``.

        Args:
            key: Kind of trouble; each kind has its own interval.
            message: ``%``-style format of the log message.
            args: Its arguments.
            always: Log even when this kind was said within the interval.
            level: Level of the record.
            exc: Attach the exception being handled.
        """
        now = self._clock()
        if always or now - self._last_said.get(key, -DIAGNOSTIC_INTERVAL) >= DIAGNOSTIC_INTERVAL:
            self._last_said[key] = now
            _diagnose(level, message, args, exc)


def _diagnose(level: int, message: str, args: tuple[object, ...], exc: bool) -> None:
    """Log on the ``smn_alert`` logger without logging's module lock (``Logger.log`` may take it).

    ``dictConfig`` holds that lock while it flushes and closes old handlers; a worker waiting for it
    there would never finish the page the flush is waiting for.
    """
    if _log.disabled or _log.manager.disable >= level or _log.getEffectiveLevel() > level:
        return
    exc_info = sys.exc_info() if exc else None
    _log.handle(_log.makeRecord(_log.name, level, __file__, 0, message, args, exc_info))


def tell_stderr(line: str) -> None:
    """Write ``line`` to stderr, for what must be seen even once logging is shut down; never raises."""
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
    except Exception:  # a closed or broken stderr at exit: nowhere left to say it
        pass
