"""Shared fixtures: a recording sender, a clean logging state for every test."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import pytest

from smn_alert._client_settings import ENV_AK, ENV_ENDPOINT_URL, ENV_PROJECT_ID, ENV_SK
from smn_alert._senders import Delivery
from smn_alert._settings import ENV_ENDPOINTS, ENV_SIGN_ID
from smn_alert.errors import SMNError
from smn_alert.testing import FakeSMNServer

NUMBERS = ["+8613800000001", "+8613800000002"]
SIGN_ID = "6be340e91e5241e4b5d85837e6709104"


def fresh_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any smn_alert or Huawei Cloud settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMN_ALERT_", "HUAWEICLOUD_SDK_"))}
    return {**env, **extra}


def smn_environment(server: FakeSMNServer, numbers: Sequence[str] = NUMBERS[:1]) -> dict[str, str]:
    """A child's environment pointing an unchanged config at ``server``, as a user would export it."""
    settings = server.settings()
    return fresh_environment(
        **{
            ENV_ENDPOINTS: ",".join(numbers),
            ENV_SIGN_ID: SIGN_ID,
            ENV_ENDPOINT_URL: settings["endpoint_url"],
            ENV_PROJECT_ID: settings["project_id"],
            ENV_AK: settings["ak"],
            ENV_SK: settings["sk"],
        }
    )


class RecordingSender:
    """A Sender that records texts, can be held (to simulate a hung SMN) or told to fail."""

    def __init__(self, endpoints: Optional[list[str]] = None) -> None:
        self.endpoints = tuple(endpoints or NUMBERS)
        self.texts: list[str] = []
        self.threads: list[str] = []
        self.outcomes: list[Union[SMNError, Delivery]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.closed = False
        self._cond = threading.Condition()

    def send(self, text: str) -> Delivery:
        self.entered.set()
        self.release.wait()
        with self._cond:
            outcome = self.outcomes.pop(0) if self.outcomes else Delivery(delivered=self.endpoints)
            if isinstance(outcome, Delivery):
                self.texts.append(text)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()
        if isinstance(outcome, SMNError):
            raise outcome
        return outcome

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.texts) >= count, timeout)
            return list(self.texts)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every test leaves the root logger's handlers and level as it found them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
