"""An exit hook registered before smn_alert is imported logs an error: it runs after the pager closed.

atexit runs hooks last in, first out, so this one runs after smn_alert's own exit hook closed the pager.
Usage: early_atexit_error.py [errors [shutdown_timeout]]: how many errors the hook logs (default 1).
"""

from __future__ import annotations

import atexit
import logging
import sys


def last_words() -> None:
    for number in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        logging.getLogger("app.script").critical("logged by an early exit hook (%d)", number)


atexit.register(last_words)  # before smn_alert is imported

from pager_setup import configure  # noqa: E402

configure(float(sys.argv[2]) if len(sys.argv) > 2 else 5.0)
