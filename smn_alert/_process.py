"""What the process does to live dispatchers: reset them in a forked child, close them at exit.

A fork from C (uWSGI without ``--lazy-apps``) skips ``os.register_at_fork``: dispatchers notice the changed
pid themselves and call :func:`forked_without_hooks`, which starts afresh as the fork hook would have.
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from typing import Optional, Protocol

from smn_alert import _guards


class LiveDispatcher(Protocol):
    """What the process machinery calls on a dispatcher (this module must not import ``dispatcher``)."""

    @property
    def closed(self) -> bool:
        """Tell whether closing has begun."""

    def begin_close(self, timeout: Optional[float] = None, *, at_exit: bool = False) -> None:
        """Tell the worker to send everything now and stop."""

    def finish_close(self) -> None:
        """Wait for the worker until the close deadline."""

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child."""


_live: weakref.WeakSet[LiveDispatcher] = weakref.WeakSet()
# The process the live dispatchers were made or last reset in: another pid means a fork that skipped
# Python's fork hooks. A dict, so that claiming the reset is one atomic step (setdefault).
_current: dict[int, object] = {os.getpid(): True}


def register(dispatcher: LiveDispatcher) -> None:
    """Have ``dispatcher`` reset in forked children and closed at exit, for as long as it lives."""
    _live.add(dispatcher)
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None and multiprocessing.parent_process() is not None:
        _finalize_in_multiprocessing_child(None)  # built inside a pool child: close it on os._exit too


def _reset_after_fork() -> None:
    pid = os.getpid()
    _current[pid] = True
    for other in [known for known in _current if known != pid]:
        _current.pop(other, None)
    _guards.forget_workers()  # the parent's worker threads do not exist here
    for dispatcher in list(_live):
        dispatcher.after_fork_in_child()


def forked_without_hooks() -> None:
    """Start every dispatcher afresh if this process was forked without Python's fork hooks.

    uWSGI (without ``--lazy-apps``) forks its workers from C: ``os.register_at_fork`` never runs, and the
    child would believe the parent's worker thread alive. The first thread to notice resets them all.
    """
    pid = os.getpid()
    if pid in _current:
        return
    claim = object()
    if _current.setdefault(pid, claim) is claim:
        _reset_after_fork()


class _Anchor:
    """Something alive for multiprocessing's after-fork registry to hold on to (it keeps weak refs)."""

    hooked = False
    finalized_in = 0  # the pid whose multiprocessing finalizer is registered


_mp_anchor = _Anchor()


def _before_fork() -> None:
    """In the parent, before a fork: if multiprocessing is in use, let its children close us on exit.

    A multiprocessing child ends with ``os._exit()``, past ``atexit``; its own finalizers still run, but
    it clears them when it starts, so the finalizer is registered by multiprocessing's after-fork hook.
    """
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and not _mp_anchor.hooked:
        mp_util.register_after_fork(_mp_anchor, _finalize_in_multiprocessing_child)
        _mp_anchor.hooked = True


def _finalize_in_multiprocessing_child(_: object) -> None:
    """Close every dispatcher when this multiprocessing child ends (once per process)."""
    if _mp_anchor.finalized_in == os.getpid():
        return
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, _close_all, exitpriority=10)
    _mp_anchor.finalized_in = os.getpid()


def _close_all() -> None:
    """At interpreter exit: close every dispatcher still open, all against one shared deadline."""
    forked_without_hooks()  # a child forked from C that never logged: not the parent's worker to wait for
    open_ones = [d for d in list(_live) if not d.closed]
    for dispatcher in open_ones:
        dispatcher.begin_close(at_exit=True)
    for dispatcher in open_ones:
        dispatcher.finish_close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_reset_after_fork)
# dispatcher imports logging before this module, and atexit runs last in, first out: dispatchers close
# before logging.shutdown() flushes them.
atexit.register(_close_all)
