"""Log an error, then reconfigure logging at once: dictConfig closes the old pager under logging's lock."""

from __future__ import annotations

import json
import logging
import logging.config
import time

from pager_setup import configure

configure(shutdown_timeout=5.0)
logging.getLogger("app.boot").error("error during start-up")
started = time.monotonic()
logging.config.dictConfig({"version": 1, "root": {"handlers": [], "level": "INFO"}})
print(json.dumps({"reconfigure_seconds": time.monotonic() - started}))
