"""The first alert is logged by an atexit hook, while the interpreter is exiting."""

from __future__ import annotations

import atexit
import logging

from pager_setup import configure

configure()


def last_words() -> None:
    # Registered after smn_alert's own hook, so it runs first (atexit is last-in, first-out).
    logging.getLogger("app.script").critical("dying in an atexit hook")


atexit.register(last_words)
