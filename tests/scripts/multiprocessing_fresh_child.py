"""A pool child builds its own pager (the parent never did) and ends with os._exit: is it paged?"""

from __future__ import annotations

import logging
import multiprocessing
import sys


def work() -> None:
    from pager_setup import configure

    configure()
    logging.getLogger("app.pool").error("first in the child")
    logging.getLogger("app.pool").error("folded in the child")  # waits for close, at the child's exit


if __name__ == "__main__":
    child = multiprocessing.get_context(sys.argv[1]).Process(target=work)
    child.start()
    child.join(30)
    assert child.exitcode == 0, child.exitcode
