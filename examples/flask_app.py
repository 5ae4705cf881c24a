"""A Flask app whose unhandled exceptions page the on-call phone.

    pip install flask
    python examples/flask_app.py

Flask logs an unhandled exception on ``app.logger`` at ERROR with the traceback; it propagates to the
root logger's pager. Configure logging before the app is created, so Flask adds no handler of its own.
Without HUAWEICLOUD_SDK_AK the example pages a local FakeSMNServer instead of SMN.
"""

from __future__ import annotations

import logging.config
import sys
from typing import Any

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "pager": {
            "class": "smn_alert.SMNHandler",
            "level": "ERROR",
            "region": "cn-north-4",
            "prefix": "shop",
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "pager"]},
}


def create_app() -> Any:
    """Build the app; its /checkout view has a bug."""
    from flask import Flask

    app = Flask("shop")

    @app.post("/checkout")
    def checkout() -> dict[str, str]:
        order = {"id": "A-1042"}
        return {"customer": order["customer"]}  # KeyError: Flask logs it and answers 500

    return app


def main() -> int:
    try:
        import flask  # noqa: F401
    except ImportError:
        print("This example needs Flask: pip install flask", file=sys.stderr)
        return 1
    from _local_smn import local_smn, show_phone

    with local_smn() as server:
        logging.config.dictConfig(LOGGING)
        response = create_app().test_client().post("/checkout")
        print(f"POST /checkout -> {response.status_code}")
        show_phone(server, *logging.getLogger().handlers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
