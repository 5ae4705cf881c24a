"""SMNHandler end to end: configuration, the application thread, folding, budget, text, retries, memory.

Every test pages through a real FakeSMNServer over real sockets, with the handler's own worker thread.
The pipeline decides by an injected fake clock: advancing it and calling ``flush()`` (which wakes the
worker) drives windows, budget, circuit and backoff without sleeping.
"""

from __future__ import annotations

import gc
import json
import logging
import logging.config
import math
import os
import re
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from smn_alert import SMNConfigError, SMNHandler
from smn_alert._fold import count_value
from smn_alert.testing import FakeClock, FakeSMNServer

from .conftest import RecordingSender

SIGN = "6be340e91e5241e4b5d85837e6709104"
NUMBERS = ["+8613800000001", "+8613800000002"]
ENV_NAMES = (
    "SMN_ALERT_ENDPOINTS", "SMN_ALERT_TOPIC_URN", "SMN_ALERT_SIGN_ID", "SMN_ALERT_PREFIX",
    "SMN_ALERT_ENDPOINT_URL", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID",
    "HUAWEICLOUD_SDK_REGION", "HUAWEICLOUD_SDK_SECURITY_TOKEN",
)  # fmt: skip
COUNTERS = ("sent", "folded", "suppressed", "dropped", "failed", "pending")


Pager = Callable[..., tuple[SMNHandler, logging.Logger]]


def adds_up(stats: dict[str, Any]) -> bool:
    """The ledger rule users rely on: every alert received is in exactly one counter."""
    return bool(stats["received"] == sum(stats[name] for name in COUNTERS))


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a cheap condition until it holds (synchronisation with a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def texts(server: FakeSMNServer) -> list[str]:
    return [message.message for message in server.messages]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SMN settings must not leak into these tests."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pager(smn_server: FakeSMNServer, clock: FakeClock) -> Iterator[Pager]:
    """Build handlers on FakeSMNServer, each on its own non-propagating logger; closed after the test."""
    made: list[tuple[logging.Logger, SMNHandler, bool, int]] = []

    def make(name: str = "app.db", **settings: Any) -> tuple[SMNHandler, logging.Logger]:
        given: dict[str, Any] = {"endpoints": NUMBERS, "sign_id": SIGN, "shutdown_timeout": 2.0}
        given.update(smn_server.settings())
        given.update(settings)
        given.setdefault("clock", clock)
        handler = SMNHandler(**given)
        logger = logging.getLogger(name)
        made.append((logger, handler, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        return handler, logger

    yield make
    for logger, handler, propagate, level in reversed(made):
        logger.removeHandler(handler)
        logger.propagate, logger.level = propagate, level
        handler.close()


# --- 1. configuration ----------------------------------------------------------------------------------
def dict_config(handler: dict[str, Any], logger: str = "app.dictconfig") -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"pager": handler},
        "loggers": {logger: {"handlers": ["pager"], "level": "INFO", "propagate": False}},
    }


@pytest.fixture
def configured() -> Iterator[list[str]]:
    """Logger names configured by a test; their handlers are closed and removed afterwards."""
    names: list[str] = []
    yield names
    gc.collect()  # a refused handler must not outlive its test (see test_logging_still_works_after_...)
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


class TestConfiguration:
    @pytest.mark.parametrize("level", [3.5, True, "loud", None])
    def test_bad_level_is_a_configuration_error_naming_it(self, level: object) -> None:
        """level=3.5 is the same ValueError (SMNConfigError) as any bad setting, not a TypeError."""
        with pytest.raises(SMNConfigError, match=r"^level="):
            SMNHandler(NUMBERS, sign_id=SIGN, sender=RecordingSender(), level=level)  # type: ignore[arg-type]

    def test_level_names_in_any_case_and_numeric_strings(self) -> None:
        """'error', 'Error' and '40' (as INI files give it) all mean ERROR."""
        for level in ("error", "Error", "40", 40):
            handler = SMNHandler(NUMBERS, sign_id=SIGN, sender=RecordingSender(), level=level)
            handler.close()
            assert handler.level == logging.ERROR

    def test_dict_config_with_plain_json_values_pages(
        self, smn_server: FakeSMNServer, configured: list[str]
    ) -> None:
        """A JSON dictConfig naming smn_alert.SMNHandler pages through SMN; INFO does not page."""
        handler = {"class": "smn_alert.SMNHandler", "level": "ERROR", "endpoints": NUMBERS, "sign_id": SIGN,
                   "prefix": "shop", "budget": 3, "window": 60, **smn_server.settings()}  # fmt: skip
        logging.config.dictConfig(json.loads(json.dumps(dict_config(handler))))
        configured.append("app.dictconfig")
        logger = logging.getLogger("app.dictconfig")
        logger.info("all good")
        logger.error("payment gateway down")
        [message] = smn_server.wait_for_messages(1)
        assert message.message == "shop ERROR app.dictconfig: payment gateway down"
        assert message.endpoints == tuple(NUMBERS) and message.sign_id == SIGN
        assert isinstance(logger.handlers[0], SMNHandler) and logger.handlers[0].stats()["received"] == 1

    def test_file_config_with_kwargs_pages(
        self, smn_server: FakeSMNServer, configured: list[str], tmp_path: Path
    ) -> None:
        """An INI fileConfig with class=smn_alert.SMNHandler and kwargs= pages through SMN."""
        kwargs = {"endpoints": ",".join(NUMBERS), "sign_id": SIGN, **smn_server.settings()}
        ini = tmp_path / "logging.ini"
        ini.write_text(
            "[loggers]\nkeys=root,app\n\n[handlers]\nkeys=pager\n\n[formatters]\nkeys=\n\n"
            "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
            "[logger_app]\nlevel=INFO\nhandlers=pager\npropagate=0\nqualname=app.fileconfig\n\n"
            f"[handler_pager]\nclass=smn_alert.SMNHandler\nlevel=ERROR\nargs=()\nkwargs={kwargs!r}\n"
        )
        logging.config.fileConfig(ini, disable_existing_loggers=False)
        configured.append("app.fileconfig")
        logging.getLogger("app.fileconfig").error("disk full on %s", "/var")
        [message] = smn_server.wait_for_messages(1)
        assert message.message == "ERROR app.fileconfig: disk full on /var"
        assert message.endpoints == tuple(NUMBERS)

    def test_environment_alone_configures_the_handler(
        self, smn_server: FakeSMNServer, configured: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With SMN_ALERT_* and HUAWEICLOUD_SDK_* set, a dictConfig with only the class pages."""
        settings = smn_server.settings()
        monkeypatch.setenv("SMN_ALERT_ENDPOINTS", " , ".join(NUMBERS))
        monkeypatch.setenv("SMN_ALERT_SIGN_ID", SIGN)
        monkeypatch.setenv("SMN_ALERT_ENDPOINT_URL", settings["endpoint_url"])
        monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", settings["project_id"])
        monkeypatch.setenv("HUAWEICLOUD_SDK_AK", settings["ak"])
        monkeypatch.setenv("HUAWEICLOUD_SDK_SK", settings["sk"])
        logging.config.dictConfig(dict_config({"class": "smn_alert.SMNHandler", "level": "ERROR"}))
        configured.append("app.dictconfig")
        logging.getLogger("app.dictconfig").critical("queue stalled")
        [message] = smn_server.wait_for_messages(1)
        assert message.message == "CRITICAL app.dictconfig: queue stalled"
        assert message.endpoints == tuple(NUMBERS) and message.sign_id == SIGN

    @pytest.mark.parametrize(
        ("settings", "named"),
        [
            ({"endpoints": ["+86abc"]}, "endpoints"),
            ({"endpoints": [8613800000000]}, "endpoints"),
            ({"endpoints": None}, "endpoints or topic_urn"),
            ({"topic_urn": "urn:smn:cn-north-4:0f1e2d3c4b5a69788796a5b4c3d2e1f0:ops"}, "topic_urn"),
            ({"sign_id": None}, "sign_id"),
            ({"message_include_sign_flag": "true"}, "message_include_sign_flag"),
            ({"extend_code": "x" * 33}, "extend_code"),
            ({"extend_src_id": "12ab"}, "extend_src_id"),
            ({"budget": 0}, "budget"),
            ({"budget": "lots"}, "budget"),
            ({"budget_period": "-5"}, "budget_period"),
            ({"window": 0}, "window"),
            ({"window": "soon"}, "window"),
        ],
    )
    def test_bad_configuration_fails_at_dict_config(
        self, smn_server: FakeSMNServer, configured: list[str], settings: dict[str, Any], named: str
    ) -> None:
        """A bad setting fails when dictConfig runs, with a ValueError naming the setting."""
        handler = {"class": "smn_alert.SMNHandler", "endpoints": NUMBERS, "sign_id": SIGN}
        handler.update(smn_server.settings())
        handler.update(settings)
        handler = {key: value for key, value in handler.items() if value is not None}
        configured.append("app.dictconfig")
        with pytest.raises(ValueError) as caught:
            logging.config.dictConfig(dict_config(handler))
        said = " | ".join(str(error) for error in _chain(caught.value))
        assert named in said
        assert not logging.getLogger("app.dictconfig").handlers

    def test_logging_still_works_after_a_refused_configuration(
        self, smn_server: FakeSMNServer, configured: list[str]
    ) -> None:
        """After dictConfig refused a bad handler, fixing the config and calling dictConfig again works."""
        good = {
            "class": "smn_alert.SMNHandler",
            "endpoints": NUMBERS,
            "sign_id": SIGN,
            **smn_server.settings(),
        }
        configured.append("app.dictconfig")
        with pytest.raises(ValueError) as refused:
            logging.config.dictConfig(dict_config({**good, "endpoints": ["+86abc"]}))
        assert "endpoints" in str(refused.value.__cause__)
        try:  # while the refused handler is still alive (here: referenced by `refused`)
            logging.config.dictConfig(dict_config(good))
            broken = ""
        except AttributeError as error:
            broken = repr(error)
        del refused
        gc.collect()  # so that a failure here does not break every later dictConfig in the run
        assert not broken, f"a handler refused earlier broke the next dictConfig: {broken}"
        logging.getLogger("app.dictconfig").error("db down")
        assert smn_server.wait_for_messages(1)[0].message == "ERROR app.dictconfig: db down"

    def test_sign_flag_works_or_fails_at_start_up(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """message_include_sign_flag='true' either pages or is refused at construction, never at 3 a.m."""
        try:
            handler, logger = pager(sign_id=None, message_include_sign_flag="true")
        except ValueError as error:
            assert "sign" in str(error)
            return
        logger.error("db down")
        handler.flush(5.0)
        assert handler.stats()["failed"] == 0, handler.stats()["last_error"]
        assert len(smn_server.wait_for_messages(1)) == 1


def _chain(error: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = error
    while current is not None:
        yield current
        current = current.__cause__ or current.__context__


# --- 2. the application thread ------------------------------------------------------------------------
class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class WeirdError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("exception __str__ exploded")


class _NamelessMeta(type):
    """A metaclass that will not tell a class's name or module (some proxy metaclasses raise so)."""

    def __getattribute__(cls, name: str) -> Any:
        if name in ("__name__", "__qualname__", "__module__"):
            raise RuntimeError("no name for you")
        return super().__getattribute__(name)


class NamelessError(Exception, metaclass=_NamelessMeta):
    def __str__(self) -> str:
        raise RuntimeError("no text either")


def _weird_exc_info(kind: str = "weird") -> Any:
    error_type = NamelessError if kind == "nameless" else WeirdError
    try:
        raise error_type()
    except error_type as error:
        return (error_type, error, error.__traceback__)


class TestApplicationThread:
    @pytest.mark.parametrize(
        ("msg", "args", "exc_info", "shown"),
        [
            ("%d orders failed", ("many",), None, "%d orders failed"),
            (BadStr(), (), None, "BadStr"),
            ("value %s", (BadStr(),), None, "value"),
            ("weird failure", (), "weird", "WeirdError"),
            ("nameless failure", (), "nameless", "ERROR app.db: nameless failure | <unknown exception>"),
            ("no traceback", (), (KeyError, KeyError("k"), None), "KeyError"),
            ("outside except", (), (None, None, None), "outside except"),
        ],
    )
    def test_emit_never_raises_and_still_pages(
        self, pager: Pager, smn_server: FakeSMNServer, msg: Any, args: Any, exc_info: Any, shown: str
    ) -> None:
        """Bad %-args, unprintable objects and weird exceptions neither raise nor lose the page."""
        handler, logger = pager()
        errors: list[logging.LogRecord] = []
        handler.handleError = errors.append  # type: ignore[method-assign, assignment]
        exc = _weird_exc_info(exc_info) if exc_info in ("weird", "nameless") else exc_info
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, msg, args, exc)
        logger.handle(record)
        [message] = smn_server.wait_for_messages(1)
        assert shown in message.message
        assert not errors

    @pytest.mark.parametrize("kind", ["plain", "mapping", "exception", "object"])
    def test_emit_never_changes_the_record(self, pager: Pager, smn_server: FakeSMNServer, kind: str) -> None:
        """Other handlers see the record exactly as logged: no message, exc_text or args changes."""
        handler, logger = pager()
        msg: Any = {"plain": "db %s timeout", "mapping": "db %(db)s timeout", "exception": "failed",
                    "object": BadStr()}[kind]  # fmt: skip
        args: Any = {"mapping": ({"db": "orders"},)}.get(kind, ("orders",) if kind == "plain" else ())
        exc_info = None
        if kind == "exception":
            try:
                raise ValueError("boom password=hunter2")
            except ValueError as error:
                exc_info = (ValueError, error, error.__traceback__)
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, msg, args, exc_info)
        before = dict(record.__dict__)
        handler.handle(record)
        assert smn_server.wait_for_messages(1)
        assert record.__dict__ == before
        assert record.msg is before["msg"] and record.args is before["args"]
        assert record.exc_info is before["exc_info"] and record.exc_text is None
        assert "message" not in record.__dict__

    def test_the_worker_thread_makes_the_request(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """emit() returns while SMN has not answered yet: the request is made by the worker thread."""
        smn_server.delay(30, n=1)
        _, logger = pager(shutdown_timeout=0.2)
        started = time.monotonic()
        logger.error("db down")
        assert time.monotonic() - started < 0.5
        [request] = smn_server.wait_for_requests(1)
        assert request.status is None  # still unanswered, so nobody on this thread is waiting for it

    def test_sender_runs_only_on_the_worker_thread(self, pager: Pager, sender: RecordingSender) -> None:
        """The send happens on smn_alert's worker thread, never on the thread that logged."""
        handler, logger = pager(sender=sender)
        logger.error("first")
        sender.wait_for(1)
        logger.error("second")
        assert handler.flush(5.0)
        assert sender.threads == ["smn_alert-handler", "smn_alert-handler"]
        assert threading.current_thread().name not in sender.threads

    def test_emit_does_not_wait_for_a_hung_smn(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """With SMN not answering, a thousand error logs still return at once."""
        smn_server.delay(30, n=1)
        handler, logger = pager(shutdown_timeout=0.2)
        logger.error("first")
        smn_server.wait_for_requests(1)
        started = time.monotonic()
        for index in range(1000):
            logger.error("order %d failed", index)
        assert time.monotonic() - started < 0.5
        assert handler.stats()["received"] == 1001

    def test_worker_runs_right_after_construction(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Building the handler starts its one daemon worker: the first alert pays for no thread start."""
        before = set(threading.enumerate())
        _, logger = pager()
        started = [t for t in set(threading.enumerate()) - before if t.name.startswith("smn_alert")]
        assert [thread.name for thread in started] == ["smn_alert-handler"]
        assert all(thread.daemon and thread.is_alive() for thread in started)
        logger.info("just info")
        logger.error("now it matters")
        now = [t for t in set(threading.enumerate()) - before if t.name.startswith("smn_alert")]
        assert now == started  # no other thread for the first alert
        smn_server.wait_for_messages(1)


# --- 3. first page fast, then fold -----------------------------------------------------------------------
def fail_here() -> None:
    raise ValueError("boom")


def fail_there() -> None:
    raise ValueError("boom")


def fail_with(kind: type) -> None:
    raise kind("boom")


class TestFolding:
    def test_first_alert_pages_at_once(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """The first alert of a quiet spell reaches SMN within tens of milliseconds, no flush needed."""
        _, logger = pager()
        logged_at = time.time()
        logger.error("db timeout")
        [message] = smn_server.wait_for_messages(1, timeout=2.0)
        assert message.received_at - logged_at < 1.0  # a folding window would be minutes

    def test_what_follows_is_folded_until_something_worse(
        self, pager: Pager, smn_server: FakeSMNServer
    ) -> None:
        """A second ERROR waits for the digest; a CRITICAL pages at once and carries the folded ERROR."""
        _, logger = pager()
        logger.error("db timeout")
        smn_server.wait_for_messages(1)
        logger.error("db timeout")
        logger.critical("db cluster lost")
        second = smn_server.wait_for_messages(2)[1].message
        assert len(smn_server.messages) == 2
        assert "db cluster lost" in second and "x1" in second and "db timeout" in second
        assert second.index("CRITICAL") < second.index("ERROR")

    def test_digest_goes_out_when_the_window_ends(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Without any flush, the folded alerts are paged as one digest when the window ends."""
        _, logger = pager(window=0.3, clock=time.monotonic)
        logger.error("db timeout")
        first = smn_server.wait_for_messages(1)[0]
        for _ in range(3):
            logger.error("db timeout")
        second = smn_server.wait_for_messages(2)[1]
        assert second.received_at - first.received_at >= 0.25
        assert second.message.startswith("ERROR x3") and "db timeout" in second.message

    def test_digest_counts_with_thousands_separator(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """1,234 repeats of one problem become one line that says x1,234."""
        handler, logger = pager()
        logger.error("db timeout on %s", "primary")
        smn_server.wait_for_messages(1)
        for index in range(1234):
            logger.error("db timeout on %s", f"replica-{index}")
        assert handler.flush(5.0)
        digest = smn_server.wait_for_messages(2)[1].message
        assert digest.startswith("ERROR x1,234") and digest.endswith("app.db: db timeout on replica-0")
        stats = handler.stats()
        assert stats["pages"] == 2 and stats["folded"] == 1233 and adds_up(stats)

    def test_fingerprint_separates_kinds(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Logger, level, template, exception type and innermost frame each make a kind of their own."""
        handler, log_a = pager("app.a")
        log_b = logging.getLogger("app.b")
        log_b.addHandler(handler)
        try:
            log_a.critical("warm-up")  # opens a CRITICAL window, so nothing below escalates
            smn_server.wait_for_messages(1)
            self._log_kinds(log_a, log_b)
            assert handler.flush(5.0)
        finally:
            log_b.removeHandler(handler)
        digest = smn_server.wait_for_messages(2)[1].message
        counts = sorted(int(found.replace(",", "")) for found in re.findall(r" x([\d,]+)", digest))
        assert counts == [2, 3, 4, 5, 6, 7, 8, 9], digest
        assert handler.stats()["sent"] == 1 + 8

    def test_a_remembered_repeat_is_told_apart_from_its_look_alikes(
        self, pager: Pager, smn_server: FakeSMNServer
    ) -> None:
        """The kind counted last is remembered by template, logger and level: an exception, another
        process (a fork from C) or a worker's thread is not counted as that kind."""
        handler, logger = pager("app.remember")
        logger.error("payment failed")
        smn_server.wait_for_messages(1)
        wait_until(lambda: len(handler._dispatcher.fold) == 1)  # counted on the calling thread from now
        tally = next(iter(handler._dispatcher.fold.values()))
        for _ in range(3):
            logger.error("payment failed")  # remembered, then counted without a lookup
        assert count_value(tally.counter) == 3
        try:
            fail_here()
        except ValueError:
            logger.exception("payment failed")  # another kind: its exception
        forked = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "payment failed", (), None)
        forked.process = os.getpid() + 1  # as a child forked from C logs it
        logger.handle(forked)
        assert count_value(tally.counter) == 3  # neither was counted as the remembered kind
        worker = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "payment failed", (), None)
        worker.thread = handler._dispatcher.worker_ident
        logger.handle(worker)  # a worker's record never pages
        assert count_value(tally.counter) == 3
        stats = handler.stats()
        assert stats["received"] == 1 + 3 + 2 and adds_up(stats)

    @staticmethod
    def _log_kinds(log_a: logging.Logger, log_b: logging.Logger) -> None:
        log_a.error("disk %s full", "/var")
        log_a.error("disk %s full", "/tmp")  # same template, other arguments: same kind (x2)
        for _ in range(3):
            log_b.error("disk %s full", "/var")  # other logger (x3)
        for _ in range(4):
            log_a.critical("disk %s full", "/var")  # other level (x4)
        for _ in range(5):
            log_a.error("disk full on %s", "/var")  # other template (x5)
        for count, raiser in ((6, fail_here), (7, fail_there)):  # other innermost line (x6, x7)
            for _ in range(count):
                try:
                    raiser()
                except ValueError:
                    log_a.exception("payment failed")
        for count, kind in ((8, KeyError), (9, TypeError)):  # other type, same line (x8, x9)
            for _ in range(count):
                try:
                    fail_with(kind)
                except (KeyError, TypeError):
                    log_a.exception("payment failed")


# --- 4. budget ------------------------------------------------------------------------------------------
class TestBudget:
    def test_budget_holds_back_and_the_next_sms_says_so(
        self, pager: Pager, smn_server: FakeSMNServer, clock: FakeClock
    ) -> None:
        """budget=2: a burst pages twice; the rest waits for a token, and that SMS says "held back N"."""
        handler, logger = pager(budget=2, budget_period=600)
        logger.error("db timeout")
        smn_server.wait_for_messages(1)
        logger.error("cache miss storm")
        assert handler.flush(5.0)
        for index in range(5):
            logger.error("order %d failed", index)
            logger.critical("payments down")
            assert handler.flush(2.0) is False  # no token: it gives up at once instead of waiting
        assert len(smn_server.messages) == 2
        stats = handler.stats()
        assert stats["pending"] == 10 and adds_up(stats)
        clock.advance(299)
        assert handler.flush(1.0) is False and len(smn_server.messages) == 2
        clock.advance(2)  # one token refills in 600 s / 2
        assert handler.flush(5.0)
        third = smn_server.wait_for_messages(3)[2].message
        assert re.search(r"held back 10\b|\b10 [\w ]*held back", third), third
        assert "payments down" in third
        stats = handler.stats()
        assert stats["suppressed"] == 8 and stats["pending"] == 0 and adds_up(stats)


# --- 5. text --------------------------------------------------------------------------------------------
def segments(text: str, *, mainland: bool = False) -> int:
    """SMS segments by the GSM 03.38 / UCS-2 rules, for texts without extension or astral characters.

    Mainland China numbers always bill as UCS-2 (smn-api.md section 5).
    """
    if not mainland and all(ord(char) < 128 for char in text):
        return 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    return 1 if len(text) <= 70 else math.ceil(len(text) / 67)


class TestText:
    def test_most_important_first(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Prefix, level, logger, message, exception type and value, in that order."""
        _, logger = pager("app.pay", prefix="shop-api")
        try:
            raise TimeoutError("read timed out after 30 s")
        except TimeoutError:
            logger.exception("charge %s failed", "order-17")
        text = smn_server.wait_for_messages(1)[0].message
        parts = ["shop-api", "ERROR", "app.pay", "charge order-17 failed", "TimeoutError",
                 "read timed out after 30 s"]  # fmt: skip
        positions = [text.index(part) for part in parts]
        assert positions == sorted(positions) and positions[0] == 0

    def test_secrets_are_redacted(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Passwords, tokens, Authorization values and the user's own pattern never reach a phone."""
        _, logger = pager(redact_patterns=[r"ACME-\d{6}"])
        try:
            raise PermissionError("login as bob password=hunter2 failed")
        except PermissionError:
            logger.exception(
                "upstream 401; Authorization: Basic Ym9iOmh1bnRlcjI= token=tok_live_51HxYz card ACME-123456"
            )
        text = smn_server.wait_for_messages(1)[0].message
        for secret in ("hunter2", "Ym9iOmh1bnRlcjI", "tok_live_51HxYz", "ACME-123456"):
            assert secret not in text
        assert "password=" in text and "upstream 401" in text

    def test_secret_shapes_never_reach_a_phone(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Flags, user:pass@host, a card, a query key and a private key cut by the snapshot: all hidden."""
        _, logger = pager()
        body = "\n".join(["onlylowercaseletterssothatnoothershapeseesit" * 2] * 60)  # 5,000+ chars, no END
        logger.error(
            "deploy --password hunter2 to admin:hunter3@db.internal card 4111 1111 1111 1111 "
            "via /geo?key=hunter4&q=x %s",
            f"-----BEGIN RSA PRIVATE KEY-----\n{body}",
        )
        text = smn_server.wait_for_messages(1)[0].message
        for secret in ("hunter2", "hunter3", "4111", "hunter4", "onlylowercase"):
            assert secret not in text
        assert "--password *** to admin:***@db.internal card *** via /geo?key=***&q=x" in text
        assert text.endswith("-----BEGIN RSA PRIVATE KEY-----***")

    @pytest.mark.parametrize(
        ("msg", "args", "shown"),
        [
            ("login failed user=%s password=%s attempt=%d", ("bob", "hunter2"),
             "login failed user=%s password=*** attempt=%d (bad log arguments: 3 placeholders, 2 arguments)"),
            ("user=%s password=%s", ("hunter2",),  # user forgotten: the password would land under user=
             "user=%s password=*** (bad log arguments: 2 placeholders, 1 argument)"),
            ("login failed", ("bob", "hunter2"),
             "login failed (bad log arguments: 0 placeholders, 2 arguments)"),
            ("user=%(user)s password=%(password)s try=%(n)d", ({"user": "bob", "password": "hunter2"},),
             "user=%(user)s password=*** try=%(n)d (bad log arguments: 3 placeholders, a mapping of 2 keys, "
             "none named n)"),
            ("attempt=%d user=%s", ("bob", "hunter2"),
             "attempt=%d user=%s (bad log arguments: 2 placeholders, 2 arguments: TypeError)"),
        ],
    )  # fmt: skip
    def test_bad_arguments_shown_as_counts_never_values(
        self, pager: Pager, smn_server: FakeSMNServer, msg: str, args: tuple[Any, ...], shown: str
    ) -> None:
        """A %-mismatch pages the template and the counts: no argument, redacted or not, reaches a phone."""
        _, logger = pager()
        logger.error(msg, *args)
        [message] = smn_server.wait_for_messages(1)
        assert message.message == f"ERROR app.db: {shown}"
        assert "hunter2" not in message.message and "bob" not in message.message

    def test_no_brackets_from_log_text(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """[] and 【】 from prefix, message or exception become other characters in every SMS."""
        handler, logger = pager(prefix="[shop]")
        logger.error("【fake sign】 [db] down")
        smn_server.wait_for_messages(1)
        for _ in range(3):
            try:
                raise KeyError("[missing]")
            except KeyError:
                logger.exception("lookup [orders] failed")
        assert handler.flush(5.0)
        sent = texts(smn_server)
        assert len(sent) == 2
        for text in sent:
            assert not set("[]【】") & set(text), text
        assert "db" in sent[0] and "lookup" in sent[1]

    def test_text_fits_max_length_on_a_character_boundary(
        self, pager: Pager, smn_server: FakeSMNServer
    ) -> None:
        """A huge message is cut to max_length with a marker, never inside a combining sequence."""
        _, logger = pager(max_length=60)
        logger.error("cafe\u0301 " * 200)
        text = smn_server.wait_for_messages(1)[0].message
        assert len(text) <= 60 and text.endswith("...")
        body = text[: -len("...")].rstrip()
        assert body.endswith("cafe\u0301") and not unicodedata.combining(text[len(body)])

    def test_default_limit_is_490_characters(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Without max_length, a page is at most SMN's 490 characters (SMN would refuse more)."""
        _, logger = pager()
        logger.error("x" * 5000)
        assert len(smn_server.wait_for_messages(1)[0].message) <= 490

    def test_stats_count_billed_segments(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """stats()['segments'] counts what SMN bills per number; +86 numbers always bill as UCS-2."""
        handler, logger = pager()
        logger.error("数据库连接超时" * 12)
        smn_server.wait_for_messages(1)
        logger.critical("disk full on db-1, writes refused since 03:12, replica lag growing, page ops!")
        smn_server.wait_for_messages(2)
        assert handler.flush(5.0)
        english = smn_server.messages[1].message
        assert segments(english) == 1 and segments(english, mainland=True) == 2  # 70 < len <= 160
        expected = sum(segments(m.message, mainland=True) * len(m.delivered) for m in smn_server.messages)
        assert handler.stats()["segments"] == expected == 2 * 2 + 2 * 2


# --- 6. retries by error class ----------------------------------------------------------------------------
class TestRetries:
    @pytest.mark.parametrize(("status", "code"), [(503, "SMN.0016"), (429, "APIG.0308")])
    def test_retryable_error_then_success_is_delivered_once(
        self, pager: Pager, smn_server: FakeSMNServer, clock: FakeClock, status: int, code: str
    ) -> None:
        """A 503 or 429 is retried after its Retry-After, delivered once, and the counters add up."""
        smn_server.fail_next(status=status, code=code, retry_after=100)
        handler, logger = pager()
        logger.error("db timeout")
        assert handler.flush(5.0) is False  # waiting out Retry-After; flush does not wait 100 s
        clock.advance(50)
        assert handler.flush(1.0) is False and len(smn_server.requests) == 1
        clock.advance(51)
        assert handler.flush(5.0)
        assert texts(smn_server) == ["ERROR app.db: db timeout"]
        assert [request.status for request in smn_server.requests] == [status, 200]
        stats = handler.stats()
        assert stats["retried"] == 1 and stats["sent"] == 1 and stats["failed"] == 0 and adds_up(stats)

    def test_connection_error_is_retried(
        self, pager: Pager, smn_server: FakeSMNServer, clock: FakeClock
    ) -> None:
        """A connection cut without an answer is retried with backoff and delivered once."""
        smn_server.close_next()
        handler, logger = pager()
        logger.error("db timeout")
        wait_until(lambda: handler.stats()["retried"] == 1)
        clock.advance(120)
        assert handler.flush(5.0)
        assert texts(smn_server) == ["ERROR app.db: db timeout"]
        assert adds_up(handler.stats())

    def test_auth_error_is_not_retried_and_opens_the_circuit(
        self, pager: Pager, smn_server: FakeSMNServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 401 is tried once, reported once; later alerts wait while the circuit is open."""
        smn_server.fail_next(
            status=401, code="APIG.0301", message="verify aksk signature fail", shape="gateway"
        )
        handler, logger = pager()
        logger.error("db timeout")
        assert handler.flush(5.0)
        assert len(smn_server.requests) == 1
        stats = handler.stats()
        assert stats["failed"] == 1 and stats["retried"] == 0 and adds_up(stats)
        for index in range(3):
            logger.error("later %d", index)
            assert handler.flush(2.0) is False
        assert len(smn_server.requests) == 1 and handler.stats()["pending"] == 3
        wait_until(lambda: any("SMNAuthError" in r.getMessage() for r in caplog.records))
        assert sum("SMNAuthError" in r.getMessage() for r in caplog.records if r.name == "smn_alert") == 1
        clock.advance(301)
        assert handler.flush(5.0)
        [message] = smn_server.wait_for_messages(1)
        assert "later" in message.message and "1 undelivered" in message.message
        assert adds_up(handler.stats())

    def test_bad_credentials_never_hammer_the_gateway(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """With a wrong SK, twenty alerts make one request: SMN locks an AK after five bad signatures."""
        handler, logger = pager(sk="wrong-secret-key-0000000000000000000000")
        for index in range(20):
            logger.log(logging.CRITICAL if index % 2 else logging.ERROR, "kind %d", index)
            handler.flush(0.5)
        assert [request.status for request in smn_server.requests] == [401]
        assert adds_up(handler.stats())

    def test_refused_number_is_reported_not_resent(
        self, pager: Pager, smn_server: FakeSMNServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A number SMN refused is reported (masked); the page is not sent again to the others."""
        smn_server.refuse(NUMBERS[1])
        handler, logger = pager()
        logger.error("db timeout")
        assert handler.flush(5.0)
        [message] = smn_server.messages
        assert message.delivered == (NUMBERS[0],) and [e for e, _ in message.refused] == [NUMBERS[1]]
        assert len(smn_server.requests) == 1
        stats = handler.stats()
        assert stats["refused"] == 1 and stats["sent"] == 1 and stats["failed"] == 0 and adds_up(stats)
        assert stats["delivered"] == {"+86138****0001": 1}
        wait_until(lambda: any("+86138****0002" in r.getMessage() for r in caplog.records))
        assert all(NUMBERS[1] not in r.getMessage() for r in caplog.records)


# --- 7. bounded memory -------------------------------------------------------------------------------------
class TestBoundedMemory:
    def _stuck(self, pager: Pager, smn_server: FakeSMNServer) -> tuple[SMNHandler, logging.Logger]:
        """A handler whose worker is inside a send SMN will not answer for a second."""
        smn_server.delay(30, n=1)
        handler, logger = pager(capacity=10, timeout=1.0, shutdown_timeout=0.5)
        logger.error("first")
        smn_server.wait_for_requests(1)
        return handler, logger

    def test_drops_are_counted_and_said(
        self, pager: Pager, smn_server: FakeSMNServer, clock: FakeClock
    ) -> None:
        """capacity=10: 50 ERRORs while SMN hangs keep 10; the next SMS says 40 dropped, CRITICAL first."""
        handler, logger = self._stuck(pager, smn_server)
        for index in range(50):
            logger.error(f"order {index} failed")  # 50 kinds: past the 10th, their text is dropped
        logger.critical("disk on fire")
        assert handler.stats()["received"] == 52
        wait_until(lambda: handler.stats()["retried"] == 1)  # the hung request timed out
        clock.advance(120)
        assert handler.flush(5.0)
        text = smn_server.wait_for_messages(1)[0].message
        assert text.startswith("CRITICAL") and "disk on fire" in text
        assert re.search(r"\b40\b[^\n]*(dropped|buffer full)", text), text
        stats = handler.stats()
        assert stats["dropped"] == 40 and stats["pending"] == 0 and adds_up(stats)

    def test_criticals_are_never_dropped_to_keep_errors(
        self, pager: Pager, smn_server: FakeSMNServer, clock: FakeClock
    ) -> None:
        """With the buffer full of ERRORs, every CRITICAL that follows is still counted in the page."""
        handler, logger = self._stuck(pager, smn_server)
        for index in range(10):
            logger.error("order %d failed", index)
        for _ in range(30):
            logger.critical("disk on fire")
        wait_until(lambda: handler.stats()["retried"] == 1)
        clock.advance(120)
        assert handler.flush(5.0)
        text = smn_server.wait_for_messages(1)[0].message
        assert "CRITICAL x30" in text, text


# --- 10. no feedback loop -------------------------------------------------------------------------------
class TestNoFeedbackLoop:
    def test_http_stack_and_own_records_never_page(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """Errors from smn_alert, urllib3 and requests loggers (and their children) are not alerts."""
        handler, _ = pager("app")
        root = logging.getLogger()
        root.addHandler(handler)
        for name in ("smn_alert", "smn_alert._dispatcher", "urllib3", "urllib3.connectionpool", "requests"):
            logging.getLogger(name).error("connection pool is full")
        logging.getLogger("app.orders").error("real problem")
        root.removeHandler(handler)
        assert handler.flush(5.0)
        assert texts(smn_server) == ["ERROR app.orders: real problem"]
        assert handler.stats()["received"] == 1

    def test_records_logged_on_the_worker_thread_never_page(
        self, pager: Pager, smn_server: FakeSMNServer
    ) -> None:
        """An error logged while sending (here by a requests hook) is not turned into another page."""
        import requests

        session = requests.Session()

        def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
            logging.getLogger("app.hooks").error("response hook saw %s", response.status_code)
            return response

        session.hooks["response"].append(hook)
        try:
            handler, logger = pager("app", session=session)
            logger.error("db timeout")
            smn_server.wait_for_messages(1)
            assert handler.flush(5.0)
            assert texts(smn_server) == ["ERROR app: db timeout"]
            assert handler.stats()["received"] == 1
        finally:
            session.close()

    def test_two_pagers_never_page_each_other(self) -> None:
        """A sender that logs an error on its worker thread: the other pager on root ignores it too."""

        class LoggingSender(RecordingSender):
            def send(self, text: str) -> Any:
                logging.getLogger("app.sender").error("sent a page")
                return super().send(text)

        first, second = LoggingSender(), LoggingSender()
        root = logging.getLogger()
        handlers = [SMNHandler(NUMBERS, sign_id=SIGN, sender=sender) for sender in (first, second)]
        for handler in handlers:
            root.addHandler(handler)
        try:
            logging.getLogger("app").error("one real problem")
            assert all(handler.flush(5.0) for handler in handlers)
            assert [len(first.texts), len(second.texts)] == [1, 1]
            assert all(handler.stats()["received"] == 1 for handler in handlers)
        finally:
            for handler in handlers:
                root.removeHandler(handler)
                handler.close()

    def test_pages_when_logging_records_no_threads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With logging.logThreads off (a documented speed-up), record.thread is None: still paged."""
        monkeypatch.setattr(logging, "logThreads", False)
        sender = RecordingSender()
        handler = SMNHandler(NUMBERS, sign_id=SIGN, sender=sender)
        logger = logging.getLogger("app.nothreads")
        logger.addHandler(handler)
        try:
            logger.error("still paged")
            assert handler.flush(5.0) and "still paged" in sender.texts[0]
        finally:
            logger.removeHandler(handler)
            handler.close()

    def test_own_warnings_hold_no_secret_and_no_whole_number(
        self, pager: Pager, smn_server: FakeSMNServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Failed sends are said on the smn_alert logger, without the SK or whole phone numbers."""
        secret = "wrong-secret-key-0000000000000000000000"
        smn_server.refuse(NUMBERS[0])
        refused, refused_logger = pager("app.one")
        locked_out, locked_logger = pager("app.two", sk=secret)
        refused_logger.error("db timeout")
        locked_logger.error("db timeout")
        assert refused.flush(5.0) and locked_out.flush(5.0)
        wait_until(lambda: len([r for r in caplog.records if r.name == "smn_alert"]) >= 2)
        assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "smn_alert")
        shown = "\n".join(
            [caplog.text, *(repr(h) + repr(h.settings) + str(h.stats()) for h in (refused, locked_out))]
        )
        assert "+86138****0001" in shown and "SMNAuthError" in shown
        assert secret not in shown and smn_server.settings()["sk"] not in shown
        assert not any(number in shown for number in NUMBERS)


# --- 11. topic mode -------------------------------------------------------------------------------------
class TestTopicMode:
    def test_alerts_are_published_to_the_topic(self, pager: Pager, smn_server: FakeSMNServer) -> None:
        """With topic_urn, pages go to the topic (which refuses brackets) instead of SmsBatchPublish."""
        urn = f"urn:smn:cn-north-4:{smn_server.project_id}:ops"
        handler, logger = pager(endpoints=None, sign_id=None, topic_urn=urn, prefix="shop")
        logger.error("[db] primary down")
        [message] = smn_server.wait_for_messages(1)
        assert message.topic_urn == urn and message.endpoints == ()
        assert message.message.startswith("shop ERROR app.db:") and "primary down" in message.message
        assert "/notifications/topics/" in smn_server.requests[0].path
        assert handler.flush(5.0)
        stats = handler.stats()
        assert stats["sent"] == 1 and adds_up(stats)
