"""Log an error, flush as gunicorn's ``worker_exit`` hook in the README does, then exit normally.

Usage: flush_then_exit.py shutdown_timeout [flush_timeout]

Prints "logged" once the error is logged. Without ``flush_timeout`` the flush is bare (``flush()``).
"""

from __future__ import annotations

import logging
import sys

from pager_setup import configure

handler = configure(float(sys.argv[1]))
logging.getLogger("app.worker").error("worker failed while shutting down")
print("logged", flush=True)
flush_timeout = float(sys.argv[2]) if len(sys.argv) > 2 else None
print("flushed" if handler.flush(flush_timeout) else "flush gave up", flush=True)
