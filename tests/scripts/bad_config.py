"""An application whose logging configuration has a bad phone number: it must fail with one clear error."""

from __future__ import annotations

import logging.config

logging.config.dictConfig(
    {
        "version": 1,
        "handlers": {"pager": {"class": "smn_alert.SMNHandler", "endpoints": ["+86 138 0000 000x"]}},
        "root": {"handlers": ["pager"]},
    }
)
