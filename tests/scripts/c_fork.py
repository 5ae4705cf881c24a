"""Fork from C, as uWSGI does without ``--lazy-apps``: Python's fork hooks do not run in the child.

Usage: c_fork.py log|quiet

The parent pages once (its worker thread is then alive, sleeping), folds a second error behind that page,
and calls libc's fork() through ctypes. "log": the child logs an error of its own and exits normally; it
must page it. "quiet": the child logs nothing; its exit must not wait for the parent's thread. The parent
prints one JSON line: the child's exit status and how long the child lived.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
import time

from pager_setup import configure

handler = configure(shutdown_timeout=3.0)
log = logging.getLogger("app.cfork")
log.error("parent error before the fork")
assert handler.flush(5.0)
log.error("parent error folded")  # pending in the parent: the child must never page it


def wait_until_the_worker_sleeps() -> None:
    """Fork as a C server's idle master does: its threads blocked, none about to take the GIL.

    A fork from C in the middle of a thread switch would leave the child's GIL unusable (Python's
    after-fork code, which repairs it, does not run): that would be the test's fault, not smn_alert's.
    """
    ident, deadline, seen = handler._dispatcher.worker_ident, time.monotonic() + 10.0, 0
    while seen < 3 and time.monotonic() < deadline:
        frame = sys._current_frames().get(ident or 0)
        seen = seen + 1 if frame is not None and frame.f_code.co_name == "_sleep" else 0
        time.sleep(0.02)


wait_until_the_worker_sleeps()
libc = ctypes.PyDLL(None)  # PyDLL keeps the GIL across the call, as a C server that forks its workers
started = time.monotonic()
pid = libc.fork()
if pid == 0:
    if sys.argv[1] == "log":
        log.error("child error after a fork from C")
    sys.exit(0)  # a normal exit: atexit closes the pager
_, status = os.waitpid(pid, 0)
print(json.dumps({"status": status, "child_seconds": time.monotonic() - started}), flush=True)
