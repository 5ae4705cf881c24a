"""Tests for smn_alert/_guards.py: ignored loggers (public ignore_logger), worker threads, the paged mark."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

import smn_alert
from smn_alert import SMNHandler, SMNProcessor, _guards
from smn_alert._guards import (
    BUILTIN_IGNORED,
    DECISIONS,
    ignore_logger,
    is_ignored_logger,
    is_worker,
    mark_paged,
    on_worker_thread,
    was_paged,
    worker_thread,
)

from .conftest import RecordingSender

NUMBERS = ["+8613800000001"]
SIGN = "6be340e91e5241e4b5d85837e6709104"


@pytest.fixture(autouse=True)
def _restore_ignored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the built-in list, and leaves it (and the decisions) as it found them."""
    monkeypatch.setattr(_guards._ignored, "roots", BUILTIN_IGNORED)
    DECISIONS.clear()
    yield
    DECISIONS.clear()


def record(name: str, msg: object = "boom") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


class TestIgnoredLoggers:
    @pytest.mark.parametrize("name", ["smn_alert", "smn_alert.worker", "urllib3.connectionpool", "requests"])
    def test_own_and_http_stack_loggers_are_ignored(self, name: str) -> None:
        assert is_ignored_logger(name)

    @pytest.mark.parametrize("name", ["app", "smn_alertx", "requests_oauthlib", "root", ""])
    def test_other_loggers_are_not(self, name: str) -> None:
        """A prefix is not a parent: "smn_alertx" is not smn_alert's child."""
        assert not is_ignored_logger(name)

    def test_ignore_logger_covers_the_logger_and_its_children_only(self) -> None:
        ignore_logger("noisy.lib")
        assert is_ignored_logger("noisy.lib")
        assert is_ignored_logger("noisy.lib.db")
        assert not is_ignored_logger("noisy")
        assert not is_ignored_logger("noisy.library")

    def test_ignore_logger_is_public(self) -> None:
        assert smn_alert.ignore_logger is ignore_logger

    def test_a_remembered_decision_is_forgotten_when_a_name_is_ignored(self) -> None:
        """The per-name cache is cleared, so a logger decided "pages" before stops paging at once."""
        assert not is_ignored_logger("app.chatty")
        assert DECISIONS["app.chatty"] is False
        ignore_logger("app")
        assert "app.chatty" not in DECISIONS
        assert is_ignored_logger("app.chatty")

    def test_ignoring_twice_changes_nothing(self) -> None:
        ignore_logger("twice")
        roots = _guards._ignored.roots
        ignore_logger("twice")
        assert _guards._ignored.roots is roots
        assert roots.count("twice") == 1

    @pytest.mark.parametrize(("name", "error"), [(None, TypeError), (42, TypeError), ("", ValueError)])
    def test_a_name_that_is_not_a_logger_name_is_refused(self, name: object, error: type) -> None:
        with pytest.raises(error):
            ignore_logger(name)  # type: ignore[arg-type]
        assert _guards._ignored.roots == BUILTIN_IGNORED

    def test_decisions_stay_bounded(self) -> None:
        """A flood of distinct logger names is decided each time past the limit, never remembered."""
        for number in range(_guards.MAX_DECISIONS + 100):
            is_ignored_logger(f"app.{number}")
        assert len(DECISIONS) == _guards.MAX_DECISIONS
        assert not is_ignored_logger("app.beyond")

    def test_the_handler_stops_paging_a_logger_ignored_after_it_paged(self) -> None:
        """SMNHandler reads the guards' cache: a name it already decided is decided again after the call."""
        sender = RecordingSender()
        handler = SMNHandler(NUMBERS, sign_id=SIGN, sender=sender)
        try:
            handler.handle(record("vendor.sdk"))
            assert handler.stats()["received"] == 1  # decided (and remembered): pages
            ignore_logger("vendor")
            handler.handle(record("vendor.sdk", "other"))
            assert handler.stats()["received"] == 1  # decided again: ignored now
            handler.handle(record("app"))
            assert handler.stats()["received"] == 2
        finally:
            handler.close()

    def test_the_handler_stops_counting_a_remembered_repeat_once_its_logger_is_ignored(self) -> None:
        """A repeat of the kind counted last skips the guards' cache, never the decision: ignoring is seen."""
        sender = RecordingSender()
        handler = SMNHandler(NUMBERS, sign_id=SIGN, sender=sender)
        try:
            handler.handle(record("vendor.sdk"))
            sender.wait_for(1)
            assert len(handler._dispatcher.fold) == 1  # the kind paged is counted on the calling thread now
            for _ in range(3):
                handler.handle(record("vendor.sdk"))  # counted; the kind is remembered
            assert handler.stats()["received"] == 4
            ignore_logger("vendor")
            handler.handle(record("vendor.sdk"))
            assert handler.stats()["received"] == 4
        finally:
            handler.close()

    def test_the_processor_stops_paging_an_ignored_logger(self) -> None:
        sender = RecordingSender()
        processor = SMNProcessor(NUMBERS, sign_id=SIGN, sender=sender)
        try:
            ignore_logger("vendor")
            processor(None, "error", {"event": "quiet", "logger": "vendor.sdk"})
            processor(None, "error", {"event": "loud", "logger": "app"})
            assert processor.flush(5.0)
            assert processor.stats()["received"] == 1
            assert len(sender.texts) == 1
            assert "loud" in sender.texts[0]
        finally:
            processor.close()


class TestWorkerThreads:
    def test_a_thread_is_a_worker_inside_the_block_only(self) -> None:
        ident = threading.get_ident()
        assert not on_worker_thread()
        with worker_thread():
            assert on_worker_thread()
            assert is_worker(ident)
        assert not on_worker_thread()
        assert not is_worker(ident)

    def test_another_thread_is_not_a_worker(self) -> None:
        seen: list[bool] = []
        with worker_thread():
            thread = threading.Thread(target=lambda: seen.append(on_worker_thread()))
            thread.start()
            thread.join()
        assert seen == [False]

    def test_an_unrecorded_thread_is_not_a_worker(self) -> None:
        assert not is_worker(None)

    def test_forget_workers_forgets_every_worker(self) -> None:
        with worker_thread():
            _guards.forget_workers()
            assert not on_worker_thread()


class TestPagedMark:
    def test_the_very_event_dict_was_paged(self) -> None:
        event = {"event": "boom", "level": "error"}
        mark_paged(event)
        assert was_paged(record("app", event))
        assert was_paged(record("app", event))  # kept marked for a second handler

    def test_render_to_log_kwargs_record_was_paged(self) -> None:
        """The event text with the event's other keys as record attributes is the same event."""
        mark_paged({"event": "boom", "order": 7})
        paged = record("app", "boom")
        paged.order = 7
        assert was_paged(paged)

    def test_a_different_record_clears_the_mark(self) -> None:
        mark_paged({"event": "boom", "order": 7})
        assert not was_paged(record("app", "boom"))  # no "order" attribute: another record
        same = record("app", "boom")
        same.order = 7
        assert not was_paged(same)  # the mark is gone: a later error that reads the same still pages

    def test_the_mark_is_per_thread(self) -> None:
        event = {"event": "boom"}
        mark_paged(event)
        seen: list[bool] = []
        thread = threading.Thread(target=lambda: seen.append(was_paged(record("app", event))))
        thread.start()
        thread.join()
        assert seen == [False]
        assert was_paged(record("app", event))
