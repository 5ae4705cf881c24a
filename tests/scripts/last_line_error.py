"""Page once, then log a second error as the very last line: it is folded, and must be paged at exit."""

from __future__ import annotations

import logging

from pager_setup import configure

handler = configure()
log = logging.getLogger("app.script")
log.error("first problem")
log.info("carrying on")
log.error("last words before exit")
