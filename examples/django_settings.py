"""The LOGGING part of a Django settings module: unhandled view errors page the on-call phone.

Django feeds LOGGING to logging.config.dictConfig at start-up. It logs every unhandled view exception
on the ``django.request`` logger at ERROR with the traceback, which propagates to the root logger's
pager. Numbers, signature and credentials come from the environment (SMN_ALERT_ENDPOINTS,
SMN_ALERT_SIGN_ID, HUAWEICLOUD_SDK_*), never from settings.py.

    python examples/django_settings.py   # shows the page an unhandled view error sends (no Django needed)
"""

from __future__ import annotations

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,  # keep Django's own loggers working
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "pager": {
            "class": "smn_alert.SMNHandler",
            "level": "ERROR",
            "region": "cn-north-4",
            "prefix": "shop-web",
        },
    },
    "root": {"handlers": ["console", "pager"], "level": "INFO"},
}


def _main() -> None:
    import logging.config

    from _local_smn import local_smn, show_phone

    with local_smn() as server:
        logging.config.dictConfig(LOGGING)
        try:
            raise KeyError("customer")
        except KeyError:  # what Django's handler logs for an unhandled exception in a view
            logging.getLogger("django.request").error(
                "Internal Server Error: %s", "/checkout/", exc_info=True, extra={"status_code": 500}
            )
        show_phone(server, *logging.getLogger().handlers)


if __name__ == "__main__":
    _main()
