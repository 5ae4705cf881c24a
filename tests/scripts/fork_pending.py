"""Fork while the parent has pages pending; the child pages only its own alert.

Protocol: prints "logged" once the parent's first error is logged, then waits for a line on stdin (the
test sends it once FakeSMNServer holds the parent's request), logs a second parent error and forks.
Each process prints one JSON line about itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

from pager_setup import configure

handler = configure()
log = logging.getLogger("app.fork")
log.error("parent-one in flight")
print("logged", flush=True)
sys.stdin.readline()
log.error("parent-two folded")
pid = os.fork()
if pid == 0:
    log.error("child-own error")
    flushed = handler.flush(5.0)
    threads = [thread.name for thread in threading.enumerate()]
    print(json.dumps({"who": "child", "flushed": flushed, "stats": handler.stats(), "threads": threads}))
    sys.stdout.flush()
    os._exit(0)
_, status = os.waitpid(pid, 0)
flushed = handler.flush(5.0)
print(json.dumps({"who": "parent", "flushed": flushed, "stats": handler.stats(), "status": status}))
