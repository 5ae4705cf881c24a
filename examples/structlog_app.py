"""Page from structlog: SMNProcessor sits in the processor chain and pages events at ERROR or above.

    pip install structlog
    python examples/structlog_app.py

Without HUAWEICLOUD_SDK_AK the example pages a local FakeSMNServer instead of SMN.
"""

from __future__ import annotations

import structlog
from _local_smn import local_smn, show_phone

from smn_alert import SMNProcessor


def configure() -> SMNProcessor:
    """Configure structlog with a pager; numbers, signature and credentials come from the environment."""
    pager = SMNProcessor(prefix="shop")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,  # the pager reads event_dict["level"]
            structlog.processors.TimeStamper(fmt="iso"),
            pager,  # before format_exc_info, so it still sees exc_info
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    )
    return pager


def main() -> None:
    with local_smn() as server:
        pager = configure()
        log = structlog.get_logger().bind(logger="shop.refunds")
        log.info("refund_requested", order_id="A-0977")  # not paged
        providers: dict[str, str] = {}
        try:
            providers["stripe"]
        except KeyError:
            log.exception("refund_failed", order_id="A-0977", amount="19.99 EUR")  # paged
        show_phone(server, pager)


if __name__ == "__main__":
    main()
