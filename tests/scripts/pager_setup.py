"""Shared by the lifecycle scripts: configure an SMNHandler the way an application would (dictConfig + env).

The test process runs a FakeSMNServer and passes its address and credentials in SMN_ALERT_* and
HUAWEICLOUD_SDK_* environment variables, so the scripts hold no settings of their own.
"""

from __future__ import annotations

import logging
import logging.config

from smn_alert import SMNHandler


def configure(shutdown_timeout: float = 5.0) -> SMNHandler:
    """Page ERROR and above of every logger through one SMNHandler on the root logger; return it."""
    logging.config.dictConfig(
        {
            "version": 1,
            "handlers": {
                "pager": {
                    "class": "smn_alert.SMNHandler",
                    "level": "ERROR",
                    "shutdown_timeout": shutdown_timeout,
                },
                "console": {"class": "logging.StreamHandler", "level": "WARNING"},
            },
            "root": {"handlers": ["pager"], "level": "INFO"},
            # smn_alert's own trouble (a page it could not send) goes to stderr, where the test reads it.
            "loggers": {"smn_alert": {"handlers": ["console"]}},
        }
    )
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, SMNHandler)
    return handler
