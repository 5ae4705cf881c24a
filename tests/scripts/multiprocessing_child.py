"""A multiprocessing worker (fork start method) logs an error and returns: its child exits with os._exit."""

from __future__ import annotations

import logging
import multiprocessing

from pager_setup import configure


def work() -> None:
    # The first alert of this process: its worker thread starts here and must send before os._exit.
    logging.getLogger("app.pool").error("task failed in a pool child")


if __name__ == "__main__":
    configure()
    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(30)
    assert child.exitcode == 0, child.exitcode
