"""Close the handler twice, log after closing, then let logging.shutdown() close it a third time."""

from __future__ import annotations

import json
import logging

from pager_setup import configure

handler = configure()
log = logging.getLogger("app.script")
log.error("closing time")
handler.close()
handler.close()
log.error("logged after close")
print(json.dumps(handler.stats()), flush=True)
