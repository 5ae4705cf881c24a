"""Shared fixtures: a recording sender (``smn_alert.testing.RecordingSender``), a mocked HTTP layer for the
client (``rsps``), and a clean logging state for every test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import pytest
import responses

from smn_alert._client_settings import ENV_AK, ENV_ENDPOINT_URL, ENV_PROJECT_ID, ENV_SK
from smn_alert._request_fields import ENV_ENDPOINTS, ENV_SIGN_ID
from smn_alert._store import ENV_SHARED_STATE
from smn_alert.testing import DEFAULT_RECIPIENTS, FakeSMNServer, RecordingSender

#: The numbers tests page: those a RecordingSender reports delivered, so the counters agree.
NUMBERS = list(DEFAULT_RECIPIENTS)
SIGN_ID = "6be340e91e5241e4b5d85837e6709104"


def fresh_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any smn_alert or Huawei Cloud settings, plus ``extra``.

    Nothing is shared between processes unless ``extra`` says so (``SMN_ALERT_SHARED_STATE``): a test's
    child must not fold into an incident another test's child paged (see ``_one_process_per_test``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMN_ALERT_", "HUAWEICLOUD_SDK_"))}
    return {**env, ENV_SHARED_STATE: "process", **extra}


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


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """A ``responses`` mock for SMNClient's requests; every registered answer must be asked for."""
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture(autouse=True)
def _one_process_per_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handlers share no state across processes unless a test asks (``shared_state=...`` or the variable).

    By default processes paging the same people share an incident; tests that build handlers for the same
    fake server one after another would fold into each other's. The sharing tests set their own.
    """
    monkeypatch.setenv(ENV_SHARED_STATE, "process")


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
