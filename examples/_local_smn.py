"""Run an example against a local FakeSMNServer when no Huawei Cloud credentials are set.

With ``HUAWEICLOUD_SDK_AK`` set, the examples page for real: set ``SMN_ALERT_ENDPOINTS`` (your own
number) and ``SMN_ALERT_SIGN_ID`` too. Without it, nothing leaves this machine.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from smn_alert.testing import FakeSMNServer

#: Where each of FakeSMNServer.settings() goes in the environment, which smn_alert reads.
ENVIRONMENT = {
    "project_id": "HUAWEICLOUD_SDK_PROJECT_ID",
    "endpoint_url": "SMN_ALERT_ENDPOINT_URL",
    "ak": "HUAWEICLOUD_SDK_AK",
    "sk": "HUAWEICLOUD_SDK_SK",
}
#: Who the examples page when they run against the fake.
FAKE_ONCALL = {
    "SMN_ALERT_ENDPOINTS": "+8613800000001",
    "SMN_ALERT_SIGN_ID": "6be340e91e5241e4b5d85837e6709104",
}


@contextlib.contextmanager
def local_smn() -> Iterator[FakeSMNServer | None]:
    """Point smn_alert at a FakeSMNServer through the environment, unless real credentials are set.

    Configure logging inside the ``with`` block: handlers read the environment when they are built.
    """
    if os.environ.get("HUAWEICLOUD_SDK_AK"):
        print("HUAWEICLOUD_SDK_AK is set: paging for real through SMN")
        yield None
        return
    with FakeSMNServer() as server:
        os.environ.update({ENVIRONMENT[name]: value for name, value in server.settings().items()})
        for name, value in FAKE_ONCALL.items():
            os.environ.setdefault(name, value)
        print(f"No HUAWEICLOUD_SDK_AK: paging a FakeSMNServer at {server.url}; no SMS leaves this machine")
        yield server


def show_phone(server: FakeSMNServer | None, *pagers: Any) -> None:
    """Flush ``pagers`` (handlers, processors), then print what the on-call phone received."""
    for pager in pagers:
        pager.flush()  # SMNHandler.flush() waits at most shutdown_timeout (5 s) for pending pages
    if server is None:
        return
    for message in server.wait_for_messages(1):
        when = time.strftime("%H:%M:%S", time.localtime(message.received_at))
        for number in message.delivered:
            print(f"\nSMS to {_masked(number)} at {when}:")
            print("\n".join(f"  | {line}" for line in message.message.splitlines()))


def _masked(number: str) -> str:
    """Show a phone number as diagnostics should: its head and its last four digits only."""
    return f"{number[:6]}****{number[-4:]}" if len(number) > 10 else "****"
