"""Configure logging from a JSON file; an ERROR pages the on-call phone.

    python examples/dictconfig_json.py

The pager's numbers, signature and credentials come from the environment (SMN_ALERT_ENDPOINTS,
SMN_ALERT_SIGN_ID, HUAWEICLOUD_SDK_*), so logging.json holds no secret and no phone number.
Without HUAWEICLOUD_SDK_AK the example pages a local FakeSMNServer instead of SMN.
"""

from __future__ import annotations

import json
import logging.config
from pathlib import Path

from _local_smn import local_smn, show_phone

CONFIG = Path(__file__).with_name("logging.json")


def charge(order_id: str) -> None:
    raise ConnectionError(f"card processor unreachable for order {order_id}")


def main() -> None:
    with local_smn() as server:
        logging.config.dictConfig(json.loads(CONFIG.read_text(encoding="utf-8")))
        log = logging.getLogger("shop.payments")
        log.info("checkout started")  # INFO: logged, not paged
        try:
            charge("A-1042")
        except ConnectionError:
            log.exception("charge failed for order %s", "A-1042")  # ERROR with traceback: paged
        show_phone(server, *logging.getLogger().handlers)


if __name__ == "__main__":
    main()
