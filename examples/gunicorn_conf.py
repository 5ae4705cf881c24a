"""Gunicorn settings that page the on-call phone from the master and from every worker.

    gunicorn -c examples/gunicorn_conf.py myapp.wsgi:application

- Gunicorn gives ``logconfig_dict`` to dictConfig in the master, then forks the workers. smn_alert is
  fork-safe: a worker starts with an empty buffer and its own sending thread on its first alert, and never
  re-sends what the master had pending. No ``post_fork`` hook is needed, and ``preload_app`` is fine.
- Gunicorn merges this dict into its defaults key by key (a shallow update), so it defines every
  top-level key gunicorn's own defaults have: ``root``, ``loggers``, ``handlers``, ``formatters``.
- The master and the workers share one SMS budget, one first page per incident and one digest: by default
  through a SQLite file of this user on this host (shared_state; SMN_ALERT_SHARED_STATE=redis://... for
  several hosts). So the default budget needs no dividing, and a worker recycled by --max-requests joins the
  same budget instead of bringing a fresh one. tests/test_examples.py checks it against SMN's limits.
- worker_exit flushes: a leaving worker hands its counts over, and the last one sends what is pending.
- Keep the console handlers: the pager sends only what is at its level, folded into digests.
- Numbers, signature and credentials come from the environment (SMN_ALERT_*, HUAWEICLOUD_SDK_*).

    python examples/gunicorn_conf.py   # shows the page a worker sends (no gunicorn needed)
"""

from __future__ import annotations

import logging
from typing import Any

bind = "127.0.0.1:8000"
workers = 4

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"},
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stderr",
        },
        "pager": {
            "class": "smn_alert.SMNHandler",
            "level": "ERROR",
            "region": "cn-north-4",
            "prefix": "shop-web",
            # The default budget and window: shared by the master and every worker (see above).
        },
    },
    "loggers": {
        # Worker timeouts and boot failures are logged here, in the master: they page too.
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console", "pager"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": ["console", "pager"]},
}


def worker_exit(server: Any, worker: Any) -> None:
    """Send this worker's pending pages before it exits (each handler waits at most shutdown_timeout)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def _main() -> None:
    import logging.config

    from _local_smn import local_smn, show_phone

    with local_smn() as server:
        logging.config.dictConfig(logconfig_dict)
        logging.getLogger("shop.views").error("checkout failed: %s", "payment service unreachable")
        worker_exit(None, None)
        show_phone(server)


if __name__ == "__main__":
    _main()
