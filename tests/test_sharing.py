"""Processes paging the same people share one incident (``_sharing``), here through a real SQLite file.

Each dispatcher has its own id in the store, so two in one interpreter stand for two processes of a fleet;
the store is the real one (a SQLite file under ``tmp_path``). Windows are real seconds (the store decides on
its own clock), and every wait is for a condition, with a deadline. Real subprocesses (fork, SIGKILL, Redis
stopped or hung) are in ``test_sharing_processes.py``.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from smn_alert import _build
from smn_alert._alert import Alert
from smn_alert._build import build_dispatcher
from smn_alert._dispatcher import Dispatcher
from smn_alert._fleet import Fleet
from smn_alert._ratelimit import TokenBucket
from smn_alert._settings import PagerSettings
from smn_alert._sharing import SharedBudget
from smn_alert._store import ENV_SHARED_STATE, Store, open_store
from smn_alert.errors import SMNAuthError, SMNConfigError, SMNRequestError
from smn_alert.testing import FakeClock, FakeSMNServer, RecordingSender

from .conftest import NUMBERS, SIGN_ID

PARTS = ("sent", "folded", "suppressed", "dropped", "failed", "pending", "handed")


def adds_up(stats: dict[str, Any]) -> bool:
    return bool(stats["received"] == sum(stats[name] for name in PARTS))


def alert(message: str = "db timeout", level: int = logging.ERROR) -> Alert:
    return Alert(level, logging.getLevelName(level), "app.db", message, message, created=time.time())


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class FailingSender(RecordingSender):
    """SMN refusing the key: what a process with a wrong SK meets."""

    def send(self, text: str) -> Any:
        self.tried = getattr(self, "tried", 0) + 1
        raise SMNAuthError("the signature does not match", code="APIGW.0301")


@pytest.fixture(autouse=True)
def _close_shared_stores() -> Iterator[None]:
    """Close the stores this test's dispatchers opened (a process keeps one per URL for its handlers)."""
    yield
    with _build._STORES_LOCK:
        stores, _build._STORES = list(_build._STORES.values()), {}
    for store in stores:
        store.close()


@pytest.fixture
def url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/shared.db"


@pytest.fixture
def fleet(url: str) -> Iterator[Callable[..., tuple[Dispatcher, RecordingSender]]]:
    """Make dispatchers that share ``url`` (each its own process in the store); closed at the end."""
    made: list[Dispatcher] = []

    def make(sender: RecordingSender | None = None, **settings: Any) -> tuple[Dispatcher, RecordingSender]:
        given = {"window": 1.0, "shared_state": url, **settings}
        checked = PagerSettings.from_kwargs(endpoints=NUMBERS[:1], sign_id=SIGN_ID, **given)
        sender = sender or RecordingSender()
        dispatcher = build_dispatcher(checked, sender=sender)
        made.append(dispatcher)
        return dispatcher, sender

    yield make
    for dispatcher in made:
        dispatcher.close(0)


class TestOneIncident:
    def test_one_first_page_and_one_digest_counting_both_processes(self, fleet: Any) -> None:
        (a, to_a), (b, to_b) = fleet(), fleet()
        a.submit(alert())
        assert to_a.wait_for(1) == ["ERROR app.db: db timeout"]
        for _ in range(10):
            a.submit(alert())
            b.submit(alert())
        eventually(lambda: len(to_a.texts) + len(to_b.texts) == 2)
        digest = (to_a.texts + to_b.texts)[1]
        assert digest.startswith("ERROR x20 ") and digest.endswith("from 2 processes: app.db: db timeout")
        assert to_b.texts in ([], [digest])  # b never paged the incident itself
        eventually(lambda: a.stats()["pending"] == 0 and b.stats()["pending"] == 0)
        assert (a.stats()["sent"], a.stats()["handed"], b.stats()["handed"]) == (1, 10, 10)
        assert adds_up(a.stats()) and adds_up(b.stats())

    def test_the_budget_is_one_for_the_target(self, fleet: Any) -> None:
        (a, to_a), (b, to_b) = fleet(budget=2, window=60.0), fleet(budget=2, window=60.0)
        a.submit(alert("first", logging.ERROR))
        to_a.wait_for(1)
        b.submit(alert("worse", logging.ERROR + 5))  # worse than what was paged: pages at once, here
        to_b.wait_for(1)
        a.submit(alert("worst", logging.CRITICAL))  # a process alone would still have a token for it
        eventually(lambda: (a.fleet_status() or {}).get("held_since") is not None)
        assert to_a.texts == ["ERROR app.db: first"] and len(to_b.texts) == 1
        assert (a.fleet_status() or {})["budget"]["2/600"] < 1

    def test_the_last_process_to_leave_sends_what_is_pending(self, fleet: Any) -> None:
        (a, to_a), (b, to_b) = fleet(window=60.0), fleet(window=60.0)
        a.submit(alert())
        to_a.wait_for(1)
        for _ in range(5):
            b.submit(alert())
        eventually(lambda: b.stats()["handed"] == 5)
        b.close(5)  # a still lives: it will send the digest, b must not
        assert to_b.texts == []
        a.close(5)
        assert to_a.texts[1] == "ERROR x5: app.db: db timeout"  # b's alerts alone: one process
        assert (a.fleet_status() or {"processes": 0})["processes"] == 0

    def test_a_flush_hands_the_counts_over_without_forcing_the_fleets_digest(self, fleet: Any) -> None:
        """gunicorn flushes every worker it recycles: that must not page, only put the counts in the store."""
        (a, to_a), (b, to_b) = fleet(window=60.0), fleet(window=60.0)
        a.submit(alert())
        to_a.wait_for(1)
        for _ in range(5):
            b.submit(alert())
        assert b.flush(5) is True
        status = b.fleet_status() or {}
        assert (b.stats()["handed"], status["unsent"], status["waiting"]) == (5, 0, 5)
        assert to_b.texts == [] and to_a.texts == ["ERROR app.db: db timeout"]

    def test_closing_with_a_page_the_budget_holds_hands_it_over_at_once(self, fleet: Any) -> None:
        """The fleet's budget is never overspent at exit: the held page goes to the store, without waiting."""
        a, to_a = fleet(budget=1, window=60.0)
        a.submit(alert("first"))
        to_a.wait_for(1)
        a.submit(alert("worse", logging.CRITICAL))  # pages at once, but the budget has nothing left
        eventually(lambda: (a.fleet_status() or {}).get("held_since") is not None)
        started = time.monotonic()
        a.close(10)
        assert time.monotonic() - started < 5  # not the whole deadline: nothing here could be paid for
        assert to_a.texts == ["ERROR app.db: first"]
        assert a.stats()["handed"] == 1 and a.stats()["pending"] == 0 and adds_up(a.stats())

    def test_a_wrong_key_is_tried_once_by_the_fleet(self, fleet: Any) -> None:
        (a, failing), (b, to_b) = fleet(FailingSender()), fleet()
        a.submit(alert())
        eventually(lambda: getattr(failing, "tried", 0) == 1)
        eventually(lambda: (b.fleet_status() or {}).get("circuit") is not None)
        b.submit(alert("much worse", logging.CRITICAL))  # b would page this at once, alone
        eventually(lambda: b.stats()["received"] == 1)
        assert b.flush(0.5) is False
        assert to_b.texts == [] and getattr(failing, "tried", 0) == 1


class RefusedTextSender(RecordingSender):
    """SMN refusing one text (a sensitive word): this process's problem, not the fleet's key."""

    def send(self, text: str) -> Any:
        raise SMNRequestError("the message contains a sensitive word", code="SMN.00010012")


class TestPauseOnlyForTheKey:
    def test_a_refused_text_pauses_only_the_process_that_sent_it(self, fleet: Any) -> None:
        (a, _), (b, _b_sent) = fleet(RefusedTextSender()), fleet()
        a.submit(alert())
        eventually(lambda: a.stats()["failed"] == 1)
        assert (b.fleet_status() or {})["circuit"] is None


class TestStoreTrouble:
    def test_an_unusable_store_falls_back_to_paging_alone_said_once(
        self, fleet: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        (tmp_path / "not-a-dir").write_text("")
        url = f"sqlite:///{tmp_path}/not-a-dir/shared.db"
        with caplog.at_level(logging.WARNING, logger="smn_alert"):
            (a, to_a), (b, to_b) = fleet(shared_state=url), fleet(shared_state=url)
            for _ in range(3):
                a.submit(alert())
                b.submit(alert())
            assert to_a.wait_for(1) == to_b.wait_for(1)  # each pages, as a lone process would
        said = [r.getMessage() for r in caplog.records if "paging per process" in r.getMessage()]
        assert len(said) == 2 and all("not-a-dir" in line for line in said)
        assert adds_up(a.stats()) and a.stats()["handed"] == 0


class TestSetting:
    def test_by_default_a_private_file_of_this_user(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, smn_server: FakeSMNServer
    ) -> None:
        monkeypatch.delenv(ENV_SHARED_STATE)
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        settings = PagerSettings.from_kwargs(endpoints=NUMBERS[:1], sign_id=SIGN_ID, **smn_server.settings())
        dispatcher = build_dispatcher(settings)
        try:
            status = dispatcher.fleet_status()
            assert status is not None and status["degraded"] is False
            folder = tmp_path / f"smn_alert-{os.geteuid()}"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and (folder / "shared-state.db").exists()
        finally:
            dispatcher.close(0)

    def test_a_test_that_injects_its_sender_shares_nothing_unless_it_asks(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(ENV_SHARED_STATE)
        dispatcher = build_dispatcher(PagerSettings.from_kwargs(endpoints=NUMBERS[:1], sign_id=SIGN_ID),
                                      sender=RecordingSender())  # fmt: skip
        try:
            assert dispatcher.fleet_status() is None
        finally:
            dispatcher.close(0)

    @pytest.mark.parametrize(
        ("value", "said"),
        [
            ("redis://ops:s3cret@redis:6379/zero", "the database after the host must be a number"),
            ("mysql://ops:s3cret@db/alerts", "unknown kind of store"),
            ("redis://ops:s3cret@redis:6379/0?socket_timeout=30", "socket_timeout"),
            ("sqlite://relative.db", "absolute file path"),
        ],
    )
    def test_a_bad_url_is_refused_at_construction_without_its_password(self, value: str, said: str) -> None:
        with pytest.raises(SMNConfigError, match="shared_state") as caught:
            PagerSettings.from_kwargs(endpoints=NUMBERS[:1], sign_id=SIGN_ID, shared_state=value)
        assert said in str(caught.value) and "s3cret" not in str(caught.value)

    def test_the_environment_variable_names_it_and_process_turns_it_off(
        self, monkeypatch: pytest.MonkeyPatch, url: str
    ) -> None:
        monkeypatch.setenv(ENV_SHARED_STATE, url)
        assert PagerSettings.from_kwargs(endpoints=NUMBERS[:1], sign_id=SIGN_ID).shared_state == url
        monkeypatch.setenv(ENV_SHARED_STATE, "process")
        settings = PagerSettings.from_kwargs(endpoints=NUMBERS[:1], sign_id=SIGN_ID, shared_state=None)
        dispatcher = build_dispatcher(settings, sender=RecordingSender())
        try:
            assert dispatcher.fleet_status() is None
        finally:
            dispatcher.close(0)

    def test_the_settings_repr_masks_the_redis_password(self) -> None:
        settings = PagerSettings.from_kwargs(
            endpoints=NUMBERS[:1], sign_id=SIGN_ID, shared_state="redis://ops:s3cret@redis:6379/2"
        )
        assert "s3cret" not in repr(settings) and "redis://ops:***@redis:6379/2" in repr(settings)


class TestSharedBudget:
    """The pager's budget with shared state: the fleet's, or the process's own while the store is down."""

    @pytest.fixture(autouse=True)
    def _stores(self) -> Iterator[None]:
        self.opened: list[Store] = []
        yield
        for store in self.opened:
            store.close()

    def budget(self, url: str) -> tuple[SharedBudget, TokenBucket, FakeClock]:
        store = open_store(url)
        assert store is not None
        self.opened.append(store)
        clock = FakeClock()
        fleet = Fleet(store, "t1", window=60.0, lease=30.0, buckets=[(1, 600.0)], circuit_cooldown=60.0,
                      clock=clock)  # fmt: skip
        local = TokenBucket(1, 600.0, clock=clock)
        return SharedBudget(fleet, local, clock), local, clock

    def test_spends_the_fleets_budget_and_waits_as_long_as_it_says(self, url: str) -> None:
        first, _, _ = self.budget(url)
        second, local, _ = self.budget(url)  # another process, same target and buckets
        assert first.next_available() == 0 and first.try_acquire()
        assert second.next_available() == 0  # it cannot know before it tries ...
        assert not second.try_acquire()  # ... and the store refuses: one SMS per 600 s for both
        assert 590 < second.next_available() <= 600 and local.tokens == 1  # its own budget untouched

    def test_the_local_budget_decides_while_the_store_is_unavailable(self, tmp_path: Any) -> None:
        (tmp_path / "file").write_text("")
        budget, local, _ = self.budget(f"sqlite:///{tmp_path}/file/shared.db")
        assert budget.try_acquire() and local.tokens == 0
        assert not budget.try_acquire() and budget.next_available() == local.next_available() > 0
