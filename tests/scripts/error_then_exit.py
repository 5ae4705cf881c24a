"""Log one error and exit normally: no flush, no close; the page must still go out at exit.

Usage: error_then_exit.py [shutdown_timeout]
"""

from __future__ import annotations

import logging
import sys

from pager_setup import configure

configure(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
logging.getLogger("app.script").error("nightly export failed")
print("logged", flush=True)
