"""pytest plugin: the ``smn_server`` fixture, a running ``FakeSMNServer`` for each test that asks for it.

Registered as the ``smn_alert`` pytest11 entry point, it loads in every pytest run where smn_alert is
installed, so it imports nothing heavy: the server module is imported when a test first asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from smn_alert.testing import FakeSMNServer


@pytest.fixture
def smn_server() -> Iterator[FakeSMNServer]:
    """Yield a started :class:`~smn_alert.testing.FakeSMNServer`; it is stopped after the test.

    Point your handler or client at it with ``**smn_server.settings()``, then check
    ``smn_server.wait_for_messages(1)``. Faults (``fail_next``, ``delay`` ...) can be set inside the test.
    """
    # Imported here, not at plugin load: http.server and friends cost every pytest run that never uses it.
    from smn_alert.testing import FakeSMNServer

    with FakeSMNServer() as server:
        yield server
