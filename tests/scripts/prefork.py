"""The pre-fork server pattern: configure logging, fork workers, and only the workers log errors."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

from pager_setup import configure

handler = configure()
log = logging.getLogger("app.worker")
children = []
for number in range(2):
    pid = os.fork()
    if pid == 0:
        log.error("worker %d crashed", number)
        flushed = handler.flush(5.0)
        threads = [thread.name for thread in threading.enumerate()]
        report = {"who": f"child-{number}", "flushed": flushed, "threads": threads, "stats": handler.stats()}
        sys.stdout.write(json.dumps(report) + "\n")  # one write: the two children print at the same time
        sys.stdout.flush()
        os._exit(0)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
threads = [thread.name for thread in threading.enumerate()]
print(json.dumps({"who": "parent", "statuses": statuses, "threads": threads, "stats": handler.stats()}))
