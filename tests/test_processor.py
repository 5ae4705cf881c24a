"""SMNProcessor in real structlog chains, paging through FakeSMNServer; one page per event with stdlib."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import time
from collections.abc import Iterator, MutableMapping
from typing import Any, Callable

import pytest
import structlog

from smn_alert import SMNConfigError, SMNHandler, SMNProcessor, _guards, ignore_logger
from smn_alert._fold import count_value
from smn_alert.testing import FakeSMNServer

from .conftest import RecordingSender

SIGN = "6be340e91e5241e4b5d85837e6709104"
NUMBERS = ["+8613800000001", "+8613800000002"]
COUNTERS = ("sent", "folded", "suppressed", "dropped", "failed", "pending")
EventDict = MutableMapping[str, Any]
Processor = Callable[[Any, str, EventDict], Any]


def adds_up(stats: dict[str, Any]) -> bool:
    return bool(stats["received"] == sum(stats[name] for name in COUNTERS))


def texts(server: FakeSMNServer) -> list[str]:
    return [message.message for message in server.messages]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def make(smn_server: FakeSMNServer) -> Iterator[Callable[..., Any]]:
    """Build SMNProcessors and SMNHandlers pointing at FakeSMNServer; closed after the test."""
    made: list[Any] = []

    def build(kind: type = SMNProcessor, **settings: Any) -> Any:
        given: dict[str, Any] = {"endpoints": NUMBERS, "sign_id": SIGN, "shutdown_timeout": 2.0}
        given.update(smn_server.settings())
        given.update(settings)
        made.append(kind(**given))
        return made[-1]

    yield build
    for pager in made:
        pager.close()


def configure(*processors: Processor) -> None:
    """structlog printing nothing: each call returns the rendered line."""
    structlog.configure(
        processors=list(processors),
        logger_factory=structlog.ReturnLoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=False,
    )


class Spy:
    """A processor that remembers which dict it saw and what was in it."""

    def __init__(self) -> None:
        self.seen: list[EventDict] = []
        self.contents: list[dict[str, Any]] = []

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        self.seen.append(event_dict)
        self.contents.append(copy.copy(dict(event_dict)))
        return event_dict


def render() -> Processor:
    return structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True)


class TestLevels:
    @pytest.mark.parametrize("first", [True, False], ids=["method-name", "level-key"])
    def test_pages_events_at_or_above_its_level(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, first: bool
    ) -> None:
        """error and critical page, debug/info/warning do not; the level comes from the key or the call."""
        processor = make()
        chain = [processor, structlog.processors.add_log_level] if first else [
            structlog.processors.add_log_level, processor]  # fmt: skip
        configure(*chain, render())
        log = structlog.get_logger()
        log.debug("cache warm")
        log.info("request served")
        log.warning("slow query")
        log.error("payment failed", order=42)
        log.critical("database lost")
        assert processor.flush(5.0)
        paged = "\n".join(texts(smn_server))
        assert "structlog: payment failed order=42" in paged and "structlog: database lost" in paged
        assert not any(quiet in paged for quiet in ("cache warm", "request served", "slow query"))
        stats = processor.stats()
        assert stats["received"] == 2 and adds_up(stats)

    def test_level_key_wins_over_the_method(
        self, make: Callable[..., Any], smn_server: FakeSMNServer
    ) -> None:
        """An event logged with level='critical' pages as CRITICAL even through .info()."""
        processor = make()
        configure(processor, render())
        structlog.get_logger().info("disk nearly full", level="critical")
        [message] = smn_server.wait_for_messages(1)
        assert message.message.startswith("CRITICAL") and "disk nearly full" in message.message

    @pytest.mark.parametrize("level", ["warning", "WARNING", logging.WARNING])
    def test_level_setting_moves_the_threshold(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, level: Any
    ) -> None:
        """level='warning' (name or number) pages warnings too, still not info."""
        processor = make(level=level)
        configure(structlog.processors.add_log_level, processor, render())
        log = structlog.get_logger()
        log.info("request served")
        log.warning("slow query")
        assert processor.flush(5.0)
        assert texts(smn_server) == ["WARNING structlog: slow query"]

    @pytest.mark.parametrize("level", ["loud", 3.5, True, None])
    def test_bad_level_fails_at_construction(self, smn_server: FakeSMNServer, level: object) -> None:
        """A level that is neither a level name nor a whole number fails at start-up, naming it."""
        settings: dict[str, Any] = dict(smn_server.settings())
        with pytest.raises(SMNConfigError, match=r"^level="):
            SMNProcessor(NUMBERS, sign_id=SIGN, level=level, **settings)

    def test_custom_logging_level_name_is_accepted(self, smn_server: FakeSMNServer) -> None:
        """A level name that logging knows (added with addLevelName) sets the threshold too."""
        logging.addLevelName(45, "SMN_TEST_PAGEME")
        settings: dict[str, Any] = dict(smn_server.settings())
        processor = SMNProcessor(NUMBERS, sign_id=SIGN, level="smn_test_pageme", **settings)
        processor.close()
        assert processor.levelno == 45


def configure_positional(*processors: Processor) -> None:
    """structlog's stdlib BoundLogger (it keeps %-arguments in ``positional_args``), returning lines."""
    structlog.configure(
        processors=list(processors),
        logger_factory=structlog.ReturnLoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


class TestPositionalArguments:
    @pytest.mark.parametrize(
        ("args", "paged"),
        [
            (("user=%s password=%s", "bob", "hunter2"), "user=bob password=***"),
            (("user=%(user)s password=%(pw)s", {"user": "bob", "pw": "hunter2"}), "user=bob password=***"),
            (("user=%(user)s pw=%(pw)s", {"user": "bob", "pw": "hunter2"}), "user=bob pw=***"),
            (("login %s failed", "admin:hunter2@db.internal"), "login admin:***@db.internal failed"),
            (("%s", {"password": "hunter2"}), "{'password': '***'}"),
        ],
    )
    def test_applied_as_structlog_will_then_redacted(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, args: tuple[Any, ...], paged: str
    ) -> None:
        """Before PositionalArgumentsFormatter, the page reads as the log line will, secrets hidden."""
        processor = make()
        formatter = structlog.stdlib.PositionalArgumentsFormatter()
        configure_positional(structlog.processors.add_log_level, processor, formatter, render())
        line = structlog.get_logger().error(*args)
        [message] = smn_server.wait_for_messages(1)
        assert message.message == f"ERROR structlog: {paged}"
        assert "positional_args" not in message.message and "positional_args" not in str(line)

    def test_mismatch_pages_the_template_and_counts_never_a_value(
        self, make: Callable[..., Any], smn_server: FakeSMNServer
    ) -> None:
        """One argument short: structlog's formatter raises, the page shows counts, not the arguments."""
        processor = make()
        formatter = structlog.stdlib.PositionalArgumentsFormatter()
        configure_positional(structlog.processors.add_log_level, processor, formatter, render())
        with pytest.raises(TypeError):  # structlog's own formatter, after the processor
            structlog.get_logger().error("login failed user=%s password=%s attempt=%d", "bob", "hunter2")
        [message] = smn_server.wait_for_messages(1)
        assert message.message == (
            "ERROR structlog: login failed user=%s password=*** attempt=%d "
            "(bad log arguments: 3 placeholders, 2 arguments)"
        )


class TestSecretKeys:
    @pytest.mark.parametrize(
        ("values", "paged"),
        [
            ({"pw": "hunter2", "passcode": "4711", "user": "bob"}, "pw=*** passcode=*** user=bob"),
            ({"auth": {"user": "bob", "password": "hunter2"}}, "auth=***"),
            ({"creds": ("bob", "hunter2"), "basic_auth": ["bob", "hunter2"]}, "creds=*** basic_auth=***"),
            ({"request_sig": "a1b2c3d4", "signature": "e5f6"}, "request_sig=*** signature=***"),
            ({"ctx": {"user": "bob", "password": "hunter2", "retries": 3}},
             "ctx=\"{'user': 'bob', 'password': '***', 'retries': 3}\""),
            ({"calls": [("login", {"api_key": "hunter2"})]},  # a page shows [] as ()
             "calls=\"(('login', {'api_key': '***'}))\""),
            ({"ctx": {"card": "4111 1111 1111 1111"}}, "ctx=\"{'card': '***'}\""),
        ],
    )  # fmt: skip
    def test_secret_names_hidden_also_inside_nested_values(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, values: dict[str, Any], paged: str
    ) -> None:
        """pw=, passcode=, auth=(...) and a password inside a dict never reach a phone; the rest stays."""
        processor = make()
        configure(structlog.processors.add_log_level, processor, render())
        structlog.get_logger().error("login failed", **values)
        [message] = smn_server.wait_for_messages(1)
        assert message.message == f"ERROR structlog: login failed {paged}"
        assert "hunter2" not in message.message

    def test_a_huge_nested_value_costs_the_caller_little(
        self, make: Callable[..., Any], smn_server: FakeSMNServer
    ) -> None:
        """A million-item list under a key is masked and cut from its first items, not copied whole."""
        processor = make()
        configure(structlog.processors.add_log_level, processor, render())
        huge = [{"password": "hunter2", "n": n} for n in range(1_000_000)]
        started = time.perf_counter()
        processor(None, "error", {"event": "batch failed", "level": "error", "rows": huge})
        assert time.perf_counter() - started < 0.2  # str() of it all took 0.9 s
        [message] = smn_server.wait_for_messages(1)
        assert message.message.startswith("ERROR structlog: batch failed rows=\"({'password': '***', 'n': 0}")
        assert "hunter2" not in message.message


def boom() -> None:
    raise ValueError("card declined")


def deep(depth: int) -> None:
    if depth == 0:
        boom()
    deep(depth - 1)


class TestExceptions:
    @pytest.mark.parametrize("how", ["exc_info", "exception", "instance"])
    def test_exception_type_and_value_are_paged(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, how: str
    ) -> None:
        """exc_info=True, log.exception() and an exception instance all put type and value in the SMS."""
        processor = make()
        configure(
            structlog.processors.add_log_level, processor, structlog.processors.format_exc_info, render()
        )
        log = structlog.get_logger()
        try:
            boom()
        except ValueError as error:
            if how == "exc_info":
                log.error("charge failed", exc_info=True)
            elif how == "exception":
                log.exception("charge failed")
            else:
                log.error("charge failed", exc_info=error)
        [message] = smn_server.wait_for_messages(1)
        assert "charge failed" in message.message
        assert "ValueError: card declined" in message.message

    def test_after_format_exc_info_the_exception_is_still_named(
        self, make: Callable[..., Any], smn_server: FakeSMNServer
    ) -> None:
        """Placed after format_exc_info (the usual production chain), the page still names the exception."""
        processor = make()
        configure(
            structlog.processors.add_log_level, structlog.processors.format_exc_info, processor, render()
        )
        try:
            deep(8)
        except ValueError:
            structlog.get_logger().exception("charge failed")
        [message] = smn_server.wait_for_messages(1)
        assert "charge failed" in message.message
        assert "ValueError" in message.message and "card declined" in message.message, message.message

    def test_after_dict_tracebacks_the_raised_exception_is_named_not_its_cause(
        self, make: Callable[..., Any], smn_server: FakeSMNServer
    ) -> None:
        """With dict_tracebacks and a chained error, the page names what was raised, not the cause."""
        processor = make()
        configure(
            structlog.processors.add_log_level, structlog.processors.dict_tracebacks, processor, render()
        )
        try:
            try:
                deep(3)
            except ValueError as cause:
                raise RuntimeError("order worker crashed") from cause
        except RuntimeError:
            structlog.get_logger().exception("worker stopped")
        [message] = smn_server.wait_for_messages(1)
        assert "RuntimeError: order worker crashed" in message.message, message.message
        assert "ValueError" not in message.message


class _NamelessMeta(type):
    """A metaclass that will not tell a class's name or module (some proxy metaclasses raise so)."""

    def __getattribute__(cls, name: str) -> Any:
        if name in ("__name__", "__qualname__", "__module__"):
            raise RuntimeError("no name for you")
        return super().__getattribute__(name)


class NamelessError(Exception, metaclass=_NamelessMeta):
    pass


def test_an_exception_that_hides_its_name_is_paged_with_a_placeholder(
    make: Callable[..., Any], smn_server: FakeSMNServer
) -> None:
    """An exception class whose metaclass raises on __name__ still pages, typed <unknown exception>."""
    processor = make()
    configure(structlog.processors.add_log_level, processor, render())
    try:
        raise NamelessError("vault sealed")
    except NamelessError:
        structlog.get_logger().exception("unseal failed")
    [message] = smn_server.wait_for_messages(1)
    assert message.message.startswith("ERROR structlog: unseal failed | <unknown exception>: vault sealed")
    assert processor.stats()["received"] == 1


class TestNoFeedbackLoop:
    def test_events_of_smn_alert_and_its_http_stack_never_page(self) -> None:
        """structlog events named for smn_alert, urllib3 or requests are not alerts (they loop)."""
        sender = RecordingSender()
        processor = SMNProcessor(NUMBERS, sign_id=SIGN, sender=sender)
        try:
            for name in ("smn_alert", "urllib3.connectionpool", "requests", "app.orders"):
                processor(None, "error", {"event": "pool is full", "logger": name})
            assert processor.flush(5.0)
            assert processor.stats()["received"] == 1 and "app.orders" in sender.texts[0]
        finally:
            processor.close()


class TestEventDict:
    def test_returns_the_event_dict_unchanged(
        self, make: Callable[..., Any], smn_server: FakeSMNServer
    ) -> None:
        """The next processor gets the very same dict with the very same content, paged or not."""
        processor, before, after = make(), Spy(), Spy()
        configure(structlog.processors.add_log_level, before, processor, after, render())
        log = structlog.get_logger()
        log.info("request served", path="/pay")
        log.error("payment failed", order=42, _private="x")
        smn_server.wait_for_messages(1)
        assert [id(d) for d in after.seen] == [id(d) for d in before.seen]
        assert after.contents == before.contents

    @pytest.mark.parametrize("position", [0, 1, 2, 3])
    def test_works_anywhere_in_the_chain(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, position: int
    ) -> None:
        """Wherever it sits before the renderer, the page is sent and the rendered line is untouched."""
        chain: list[Processor] = [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
        ]
        configure(*chain, render())
        expected = structlog.get_logger().error("payment failed", order=42)
        processor = make()
        chain.insert(position, processor)
        configure(*chain, render())
        assert structlog.get_logger().error("payment failed", order=42) == expected
        [message] = smn_server.wait_for_messages(1)
        assert message.message == "ERROR structlog: payment failed order=42"

    def test_unprintable_values_do_not_break_logging(
        self, make: Callable[..., Any], smn_server: FakeSMNServer
    ) -> None:
        """A value whose str() raises neither breaks the log call nor loses the page."""

        class BadStr:
            def __str__(self) -> str:
                raise RuntimeError("no")

            def __repr__(self) -> str:
                return "BadStr()"

        processor = make()
        configure(structlog.processors.add_log_level, processor, render())
        assert "payment failed" in structlog.get_logger().error("payment failed", thing=BadStr())
        [message] = smn_server.wait_for_messages(1)
        assert "payment failed" in message.message


@pytest.fixture
def stdlib_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("svc.structlog")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def configure_stdlib(*processors: Processor) -> None:
    structlog.configure(
        processors=list(processors),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


class TestOnePagePerEvent:
    def _handler(self, make: Callable[..., Any], logger: logging.Logger) -> SMNHandler:
        handler: SMNHandler = make(SMNHandler)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
        )
        logger.addHandler(handler)
        return handler

    def test_processor_and_handler_page_an_event_once(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, stdlib_logger: logging.Logger
    ) -> None:
        """An event paged by the processor and then handed to SMNHandler by ProcessorFormatter pages once."""
        processor = make()
        handler = self._handler(make, stdlib_logger)
        configure_stdlib(
            structlog.stdlib.add_log_level, processor, structlog.stdlib.ProcessorFormatter.wrap_for_formatter
        )
        structlog.get_logger("svc.structlog").error("db down", shard=3)
        assert processor.flush(5.0) and handler.flush(5.0)
        assert texts(smn_server) == ["ERROR svc.structlog: db down shard=3"]
        assert processor.stats()["received"] == 1 and handler.stats()["received"] == 0

    def test_render_to_log_kwargs_pages_once(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, stdlib_logger: logging.Logger
    ) -> None:
        """With render_to_log_kwargs the record carries the event text; it is still paged only once."""
        processor = make()
        handler: SMNHandler = make(SMNHandler)
        stdlib_logger.addHandler(handler)
        configure_stdlib(structlog.stdlib.add_log_level, processor, structlog.stdlib.render_to_log_kwargs)
        structlog.get_logger("svc.structlog").error("db down")
        assert processor.flush(5.0) and handler.flush(5.0)
        assert texts(smn_server) == ["ERROR svc.structlog: db down"]

    def test_handler_pages_structlog_events_without_a_processor(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, stdlib_logger: logging.Logger
    ) -> None:
        """With no SMNProcessor in the chain, SMNHandler pages the structlog event, once."""
        handler = self._handler(make, stdlib_logger)
        configure_stdlib(
            structlog.stdlib.add_log_level, structlog.stdlib.ProcessorFormatter.wrap_for_formatter
        )
        log = structlog.get_logger("svc.structlog")
        log.info("request served")
        log.error("db down", shard=3)
        assert handler.flush(5.0)
        assert texts(smn_server) == ["ERROR svc.structlog: db down shard=3"]
        assert handler.stats()["received"] == 1

    def test_a_plain_stdlib_error_is_not_mistaken_for_a_paged_event(
        self, make: Callable[..., Any], smn_server: FakeSMNServer, stdlib_logger: logging.Logger
    ) -> None:
        """A stdlib error that merely reads like an earlier structlog event is still paged."""
        processor = make()
        handler: SMNHandler = make(SMNHandler, endpoints=NUMBERS[1:])
        stdlib_logger.addHandler(handler)
        # structlog renders the event itself (JSONRenderer leaves the dict as it is); stdlib never sees it
        configure(structlog.processors.add_log_level, processor, structlog.processors.JSONRenderer())
        structlog.get_logger().error("payment failed")
        stdlib_logger.error("payment failed")
        assert processor.flush(5.0) and handler.flush(5.0)
        assert handler.stats()["received"] == 1
        assert sorted(m.endpoints for m in smn_server.messages) == [tuple(NUMBERS), tuple(NUMBERS[1:])]

    def test_events_of_structlog_output_loggers_are_not_marked(
        self, make: Callable[..., Any], stdlib_logger: logging.Logger
    ) -> None:
        """PrintLogger and its kin write to a file, never to stdlib: their events need no paged mark."""
        from smn_alert import _guards

        processor = make()
        make(SMNHandler, endpoints=NUMBERS[1:])  # a handler exists: marks are worth making
        printed, returned = {"event": "disk full"}, {"event": "disk full"}
        processor(structlog.PrintLogger(), "error", printed)
        assert _guards._paged.mark is None or _guards._paged.mark[0] is not printed
        processor(structlog.ReturnLogger(), "error", returned)  # may hand its event on: marked
        assert _guards._paged.mark is not None and _guards._paged.mark[0] is returned
        assert processor.flush(5.0)


@pytest.mark.subprocess
def test_processor_does_not_need_structlog_imported(smn_server: FakeSMNServer) -> None:
    """smn_alert builds and runs an SMNProcessor without importing structlog itself."""
    settings = {"endpoints": NUMBERS, "sign_id": SIGN, **smn_server.settings()}
    code = (
        "import sys, smn_alert\n"
        f"p = smn_alert.SMNProcessor(**{settings!r})\n"
        "d = {'event': 'db down'}\n"
        "assert p(None, 'error', d) is d\n"
        "assert p.flush(5.0)\n"
        "print('structlog' in sys.modules)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert texts(smn_server) == ["ERROR structlog: db down"]
    assert time.monotonic() - started < 10


class TestRememberedRepeat:
    """The kind counted last is remembered by event text, logger and level; nothing else counts as it."""

    def test_look_alikes_are_not_counted_as_the_remembered_kind(self, make: Callable[..., Any]) -> None:
        processor = make()
        event = "payment failed"
        processor(None, "error", {"event": event, "logger": "app"})
        wait_for_fold(processor)
        tally = next(iter(processor._dispatcher.fold.values()))
        for _ in range(3):
            processor(None, "error", {"event": event, "logger": "app"})  # remembered, then counted
        assert count_value(tally.counter) == 3
        try:
            raise ValueError("declined")
        except ValueError as error:
            processor(None, "error", {"event": event, "logger": "app", "exc_info": error})
        processor(None, "error", {"event": event, "logger": "app", "exception": "Traceback ...\nKeyError: x"})
        processor(None, "error", {"event": event, "logger": "app.other"})
        processor(None, "critical", {"event": event, "logger": "app"})
        assert count_value(tally.counter) == 3  # four other kinds
        stats = processor.stats()
        assert stats["received"] == 1 + 3 + 4 and adds_up(stats)

    def test_a_logger_ignored_since_is_not_counted(self, make: Callable[..., Any]) -> None:
        processor = make()
        processor(None, "error", {"event": "pool is full", "logger": "vendor.sdk"})
        wait_for_fold(processor)
        processor(None, "error", {"event": "pool is full", "logger": "vendor.sdk"})
        assert processor.stats()["received"] == 2
        roots, decisions = _guards.IGNORED.roots, dict(_guards.DECISIONS)
        try:
            ignore_logger("vendor")
            processor(None, "error", {"event": "pool is full", "logger": "vendor.sdk"})
            assert processor.stats()["received"] == 2
        finally:
            _guards.IGNORED.roots = roots
            _guards.DECISIONS.clear()
            _guards.DECISIONS.update(decisions)


def wait_for_fold(processor: SMNProcessor, timeout: float = 5.0) -> None:
    """Until the first page went and its kind is counted on the calling thread."""
    deadline = time.monotonic() + timeout
    while len(processor._dispatcher.fold) != 1:
        assert time.monotonic() < deadline, "the kind paged was never published"
        time.sleep(0.005)
