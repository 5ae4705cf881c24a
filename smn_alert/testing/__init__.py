"""Test doubles for alerting code: a fake SMN on 127.0.0.1, an in-process sender, a clock tests move.

- :class:`FakeSMNServer`: a real HTTP server that answers like Huawei Cloud SMN. It checks signatures,
  validates bodies by its own table of SMN's rules, records what it received and fails on command. The
  ``smn_server`` pytest fixture (installed with the package) gives each test a running one.
- :class:`RecordingSender`: no sockets at all: ``SMNHandler(..., sender=RecordingSender())`` runs the whole
  pipeline and records each page's text; it can fail or hang on command.
- :class:`FakeClock`: ``SMNHandler(..., clock=clock)`` decides windows, budget, backoff and the circuit by
  it; ``clock.advance(300)`` then ``handler.flush()`` plays five minutes at once.

Only the standard library is used: importing this module never imports ``requests``.
"""

from __future__ import annotations

from smn_alert.testing._clock import FakeClock
from smn_alert.testing._recording import DEFAULT_RECIPIENTS, RecordingSender
from smn_alert.testing._records import ReceivedMessage, ReceivedRequest
from smn_alert.testing._server import DEFAULT_AK, DEFAULT_PROJECT_ID, DEFAULT_SK, FakeSMNServer

__all__ = [
    "DEFAULT_AK",
    "DEFAULT_PROJECT_ID",
    "DEFAULT_RECIPIENTS",
    "DEFAULT_SK",
    "FakeClock",
    "FakeSMNServer",
    "ReceivedMessage",
    "ReceivedRequest",
    "RecordingSender",
]
