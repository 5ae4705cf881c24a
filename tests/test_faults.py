"""Fault suite: every way SMN can fail, and what smn_alert does about it (retry, report, count, keep quiet).

Each test drives a real ``SMNHandler`` against ``FakeSMNServer`` over real sockets, with the pipeline's
clock injected: log an error, let the first attempt fail, advance the fake clock past the backoff,
``flush()``, assert.
For every fault the test says whether smn_alert retries (the requests SMN saw), what it reports on the
``smn_alert`` logger and how often, that the application's logging call returned at once without an
exception, and that ``stats()`` adds up with the alert in the right counter.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

import pytest

from smn_alert import SMNHandler
from smn_alert._ratelimit import DEFAULT_BACKOFF_CAP, DEFAULT_PER_NUMBER_BACKOFF
from smn_alert._responses import MAX_ANSWER_BYTES
from smn_alert.testing import DEFAULT_SK, FakeClock, FakeSMNServer

from .conftest import NUMBERS

SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
WRONG_SK = "wrong-sk-must-never-be-logged-0123456789abcdef"
WRONG_TOKEN = "wrong-token-must-never-be-logged-0123456789"
SERVER_TOKEN = "right-token-must-never-be-logged-9876543210"
#: The longest an application's ``logger.error()`` may take, whatever SMN is doing (it does no I/O).
APP_CALL_LIMIT = 0.1
#: Past the longest jittered backoff of a server or connection error.
PAST_BACKOFF = DEFAULT_BACKOFF_CAP + 1
#: The circuit breaker's first cooldown used by these tests (the default, spelled out).
COOLDOWN = 300.0
#: A max alert age short enough that the rate limit of diagnostics (60 s) would swallow the give-up note.
SHORT_MAX_AGE = 30.0
COUNTERS = ("sent", "folded", "suppressed", "dropped", "failed", "pending")
HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title><script>var x = 1;</script></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for a condition the worker thread brings about (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def answered_bytes(server: FakeSMNServer, index: int) -> int:
    """How much of its answer request ``index`` got before the answer ended or the client hung up."""
    wait_until(lambda: server.requests[index].answered_bytes is not None, f"answer {index} to end")
    written = server.requests[index].answered_bytes
    assert written is not None
    return written


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens (connections are refused)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


class Rig:
    """A real SMNHandler on its own application logger, with what the application would notice."""

    def __init__(self, handler: SMNHandler, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
        self.handler, self.clock, self._caplog = handler, clock, caplog
        self.logger = logging.getLogger(f"app.faults.{uuid.uuid4().hex[:8]}")
        self.logger.propagate = False
        self.logger.addHandler(handler)
        self.handle_errors: list[logging.LogRecord] = []
        handler.handleError = self.handle_errors.append  # type: ignore[method-assign, assignment]
        self.app_times: list[float] = []

    def log(self, message: str = "payment db timeout", level: int = logging.ERROR) -> None:
        """Log an error as the application would, timing the call and checking it raised nothing."""
        started = time.perf_counter()
        self.logger.log(level, message)  # an exception here fails the test: nothing may reach the application
        self.app_times.append(time.perf_counter() - started)

    def stats(self) -> dict[str, Any]:
        return self.handler.stats()

    def wait_stats(self, what: str, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait until the worker has settled an attempt so that ``condition(stats)`` holds."""
        wait_until(lambda: condition(self.stats()), what)
        return self.stats()

    def records(self) -> list[logging.LogRecord]:
        """Everything smn_alert logged so far."""
        return [r for r in self._caplog.records if r.name.startswith("smn_alert")]

    def warnings(self) -> list[logging.LogRecord]:
        """smn_alert's own warnings (and worse) so far."""
        return [r for r in self.records() if r.levelno >= logging.WARNING]

    def said(self, count: int, level: int = logging.WARNING) -> list[logging.LogRecord]:
        """smn_alert's records at ``level`` or above, once there are ``count`` of them.

        The worker logs a diagnostic just after it settles an attempt, so a test that saw the counters
        change waits for the words too.
        """
        wait_until(
            lambda: len([r for r in self.records() if r.levelno >= level]) >= count, f"{count} record(s)"
        )
        return [r for r in self.records() if r.levelno >= level]

    def check_application_untouched(self) -> None:
        """Nothing reached the application: no handleError, no slow logging call, no error-level report."""
        assert self.handle_errors == []
        assert self.app_times and max(self.app_times) < APP_CALL_LIMIT, self.app_times
        assert not [r for r in self.warnings() if r.levelno >= logging.ERROR], "smn_alert's worker hit a bug"

    def check_no_secrets(self, *secrets: str) -> None:
        """No SK, token or whole phone number in any smn_alert record (message, arguments or traceback)."""
        whole_numbers = [*NUMBERS, *(n[3:] for n in NUMBERS)]
        for record in self._caplog.records:
            if not record.name.startswith("smn_alert"):
                continue
            text = record.getMessage()
            if record.exc_info:
                text += logging.Formatter().formatException(record.exc_info)
            for secret in (DEFAULT_SK, SERVER_TOKEN, *secrets, *whole_numbers):
                assert secret not in text, f"{secret[:6]}... leaked in: {text[:200]}"


MakeRig = Callable[..., Rig]


def retried(times: int) -> Callable[[dict[str, Any]], bool]:
    """A ``wait_stats`` condition: the pipeline has scheduled ``times`` retries."""
    return lambda stats: bool(stats["retried"] == times)


def adds_up(stats: dict[str, Any]) -> bool:
    return bool(stats["received"] == sum(stats[name] for name in COUNTERS))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server() -> Iterator[FakeSMNServer]:
    with FakeSMNServer() as fake:
        yield fake


@pytest.fixture
def make_rig(server: FakeSMNServer, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> Iterator[MakeRig]:
    """Build rigs pointed at ``server`` (settings overridable); close them all after the test."""
    caplog.set_level(logging.DEBUG, logger="smn_alert")
    rigs: list[Rig] = []

    def make(**overrides: Any) -> Rig:
        settings: dict[str, Any] = {
            **server.settings(),
            "endpoints": NUMBERS,
            "sign_id": SIGN_ID,
            "budget": 100,
            "shutdown_timeout": 0.5,
            "circuit_cooldown": COOLDOWN,
        }
        settings.update(overrides)
        settings = {name: value for name, value in settings.items() if value is not None}
        rig = Rig(SMNHandler(clock=clock, **settings), clock, caplog)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.logger.removeHandler(rig.handler)
        rig.handler.close()


# --- the fault table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """One way a request to SMN can fail, as the fake server is told to produce it."""

    name: str
    inject: Callable[[FakeSMNServer, int], None]  # (server, how many requests fail)
    said: str  # what the warning on the smn_alert logger must mention
    client: Optional[dict[str, Any]] = None  # handler settings this fault needs


def _fail(status: int, code: str, message: str, shape: str = "smn") -> Callable[[FakeSMNServer, int], None]:
    return lambda server, n: server.fail_next(n, status=status, code=code, message=message, shape=shape)  # type: ignore[arg-type]


def _malformed_json(server: FakeSMNServer, n: int) -> None:
    server.malformed_next(
        n, status=200, body=b'{"request_id": "r1", "result": [{"endp', content_type="application/json"
    )


def _html_502(server: FakeSMNServer, n: int) -> None:
    server.malformed_next(n, status=502, body=HTML_502, content_type="text/html")


def _close(server: FakeSMNServer, n: int) -> None:
    server.close_next(n)


def _huge(framing: Literal["length", "chunked", "close"]) -> Callable[[FakeSMNServer, int], None]:
    return lambda server, n: server.huge_next(n, mebibytes=200, framing=framing)


def _slow(server: FakeSMNServer, n: int) -> None:
    server.delay(0.6, n=n)


SERVER_SIDE = [
    Fault("500", _fail(500, "SMN.0016", "Internal server error."), "status=500"),
    Fault("502", _fail(502, "APIG.0202", "Backend unavailable.", "gateway"), "status=502"),
    Fault("503", _fail(503, "SMN.0016", "Service unavailable, please try again later."), "status=503"),
    Fault("504", _fail(504, "APIG.0201", "Backend timeout.", "gateway"), "status=504"),
    Fault("malformed JSON in a 200", _malformed_json, "malformed answer"),
    Fault("HTML error page (502 text/html)", _html_502, "502 Bad Gateway"),
    Fault("200 MiB answer with Content-Length", _huge("length"), "malformed answer from SMN: over 1 MiB"),
    Fault("200 MiB chunked answer", _huge("chunked"), "malformed answer from SMN: over 1 MiB"),
    Fault("connection closed without an answer", _close, "cannot reach SMN"),
]
READ_TIMEOUT = Fault("read timeout", _slow, "no answer in time", {"timeout": 0.3})


class TestRetriedThenDelivered:
    @pytest.mark.parametrize("fault", SERVER_SIDE, ids=lambda f: f.name)
    def test_one_failure_is_retried_once_and_the_page_delivered(
        self, fault: Fault, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """A transient 5xx, garbage answer or dropped connection: retried once, delivered, one warning.

        Retries: yes, exactly once (SMN sees 2 requests, takes 1 message). Reported: one warning naming
        the failure. Outcome: ``sent`` (delivered after retry), nothing failed, the counters add up.
        """
        rig = make_rig(**(fault.client or {}))
        fault.inject(server, 1)
        rig.log()
        stats = rig.wait_stats("the first attempt to fail", lambda s: s["retried"] == 1)
        assert stats["pending"] == 1 and stats["sent"] == 0 and adds_up(stats)
        assert len(server.requests) == 1
        rig.clock.advance(PAST_BACKOFF)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 2
        assert len(server.messages) == 1 and "payment db timeout" in server.messages[0].message
        stats = rig.stats()
        assert (
            stats["sent"] == 1 and stats["failed"] == 0 and stats["retried"] == 1 and stats["received"] == 1
        )
        assert adds_up(stats)
        warnings = rig.said(1)
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert fault.said in warnings[0].getMessage() and "retry" in warnings[0].getMessage()
        assert "<" not in warnings[0].getMessage(), "HTML markup reached the diagnostic"
        rig.check_application_untouched()
        rig.check_no_secrets()

    def test_read_timeout_is_retried_and_may_page_twice(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """SMN answers after the client's 0.3 s timeout: retried once and delivered; the app never waits.

        Retries: yes, once (2 requests). A timeout is ambiguous: SMN may have taken the first request, so
        the phone may get the page twice (at-least-once, better than none). Reported: one warning.
        Outcome: ``sent``; the application's logging call took microseconds, not the 0.3 s timeout.
        """
        rig = make_rig(timeout=0.3)
        server.delay(0.6, n=1)
        rig.log()
        stats = rig.wait_stats("the first attempt to time out", lambda s: s["retried"] == 1)
        assert "no answer in time" in str(stats["last_error"])
        rig.clock.advance(PAST_BACKOFF)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 2
        assert len(server.wait_for_messages(2, timeout=3.0)) == 2  # the slow first answer was accepted too
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["failed"] == 0 and stats["retried"] == 1 and adds_up(stats)
        warnings = rig.said(1)
        assert len(warnings) == 1 and "no answer in time" in warnings[0].getMessage()
        rig.check_application_untouched()
        rig.check_no_secrets()

    def test_many_failed_attempts_say_one_warning(self, server: FakeSMNServer, make_rig: MakeRig) -> None:
        """Four 503s in a row: four retries, each after its backoff, but one warning, not one per attempt.

        Retries: yes (5 requests, the fifth delivered). Reported: one warning. Outcome: ``sent``.
        """
        rig = make_rig()
        server.fail_next(4, status=503, code="SMN.0016")
        rig.log()
        for attempt in range(1, 5):
            rig.wait_stats(f"failed attempt {attempt}", retried(attempt))
            assert len(server.requests) == attempt
            rig.clock.advance(PAST_BACKOFF)
            rig.handler.flush(0.01)  # wakes the worker for the next attempt
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 5 and len(server.messages) == 1
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["retried"] == 4 and stats["failed"] == 0 and adds_up(stats)
        assert len(rig.said(1)) == 1, [r.getMessage() for r in rig.warnings()]
        rig.check_application_untouched()
        rig.check_no_secrets()


class TestHostileAnswers:
    def test_a_dripping_server_is_abandoned_and_the_critical_still_goes_out(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """SMN's answer drips 10 bytes a second, each well within the 0.25 s read timeout: abandoned at 0.5 s.

        Before, the worker read the drip for as long as it lasted, and a CRITICAL logged meanwhile waited.
        Retries: yes, once, like a timeout (2 requests; SMN took the first too, so the phone may get it
        twice). Reported: one warning, "no answer in time". Outcome: ``sent``.
        """
        rig = make_rig(timeout=0.25)  # connect 0.25 s, each read 0.25 s, a whole attempt 0.5 s
        server.drip(10, n=1)
        started = time.monotonic()
        rig.log("payment db down", level=logging.CRITICAL)
        stats = rig.wait_stats("the dripped attempt to be abandoned", retried(1))
        assert time.monotonic() - started < 0.5 + 2.0  # the deadline, and room for a loaded machine
        assert "no answer in time" in str(stats["last_error"])
        rig.clock.advance(PAST_BACKOFF)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 2
        assert all("payment db down" in m.message for m in server.wait_for_messages(2))
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["failed"] == 0 and stats["retried"] == 1 and adds_up(stats)
        warnings = rig.said(1)
        assert len(warnings) == 1 and "no answer in time" in warnings[0].getMessage()
        rig.check_application_untouched()
        rig.check_no_secrets()

    @pytest.mark.parametrize("framing", ["length", "chunked", "close"])
    def test_a_200_mib_answer_is_read_no_further_on_any_attempt(
        self, framing: Literal["length", "chunked", "close"], server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """Two 200 MiB answers in a row (a portal page), then SMN: each attempt stops at the 1 MiB cap.

        Before, each attempt read the 200 MiB whole: hundreds of MB of memory, twice. Retries: yes, twice
        (3 requests). Reported: one warning, "malformed answer". Outcome: ``sent``.
        """
        rig = make_rig()
        server.huge_next(2, mebibytes=200, framing=framing)
        rig.log()
        for attempt in (1, 2):
            stats = rig.wait_stats(f"huge answer {attempt}", retried(attempt))
            assert "malformed answer from SMN: over 1 MiB" in str(stats["last_error"])
            rig.clock.advance(PAST_BACKOFF)
            rig.handler.flush(0.01)  # wakes the worker for the next attempt
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 3 and len(server.messages) == 1
        # What went out before the client hung up: the cap, plus what the sockets buffered.
        written = [answered_bytes(server, index) for index in (0, 1)]
        assert max(written) < 3 * MAX_ANSWER_BYTES, written
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["retried"] == 2 and stats["failed"] == 0 and adds_up(stats)
        assert len(rig.said(1)) == 1
        rig.check_application_untouched()
        rig.check_no_secrets()


class TestThrottling:
    def test_429_with_retry_after_waits_exactly_as_told(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """429 with ``Retry-After: 120``: nothing is sent for 120 s, then one retry delivers the page.

        Retries: yes, once, not before Retry-After (SMN sees 1 request at +119 s, 2 at +121 s).
        Reported: one warning. Outcome: ``sent``.
        """
        rig = make_rig()
        server.fail_next(1, status=429, code="APIG.0308", shape="gateway", retry_after=120)
        rig.log()
        rig.wait_stats("the 429", lambda s: s["retried"] == 1)
        rig.clock.advance(119)
        assert rig.handler.flush(0.3) is False  # blocked by Retry-After beyond the flush timeout
        assert len(server.requests) == 1
        rig.clock.advance(2)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 2 and len(server.messages) == 1
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["retried"] == 1 and stats["failed"] == 0 and adds_up(stats)
        warnings = rig.said(1)
        assert len(warnings) == 1 and "APIG.0308" in warnings[0].getMessage()
        rig.check_application_untouched()
        rig.check_no_secrets()

    def test_429_without_retry_after_waits_two_to_five_seconds(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """429 without ``Retry-After``: retried after a jittered 2-5 s, never sooner, then delivered.

        Retries: yes, once (1 request before +2 s, 2 by +5 s). Reported: one warning. Outcome: ``sent``.
        """
        rig = make_rig()
        server.fail_next(1, status=429, code="APIG.0308", shape="gateway")
        rig.log()
        rig.wait_stats("the 429", lambda s: s["retried"] == 1)
        rig.clock.advance(1.99)
        rig.handler.flush(0.2)
        assert len(server.requests) == 1, "retried sooner than 2 s after a 429"
        rig.clock.advance(3.02)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 2 and len(server.messages) == 1
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["retried"] == 1 and adds_up(stats)
        assert len(rig.said(1)) == 1
        rig.check_application_untouched()
        rig.check_no_secrets()

    def test_per_number_limit_smn0057_backs_off_for_minutes(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """403 SMN.0057 (60 SMS per number per hour): no retry for 5 minutes, then one retry delivers.

        Retries: yes, once, after the long per-number backoff (1 request at +299 s, 2 at +301 s); the
        circuit does not open. Reported: one warning naming SMN.0057. Outcome: ``sent``.
        """
        rig = make_rig()
        server.fail_next(1, status=403, code="SMN.0057", message="The number of SMS exceeds the limit.")
        rig.log()
        rig.wait_stats("the SMN.0057", lambda s: s["retried"] == 1)
        rig.clock.advance(DEFAULT_PER_NUMBER_BACKOFF - 1)
        assert rig.handler.flush(0.3) is False
        assert len(server.requests) == 1
        rig.clock.advance(2)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 2 and len(server.messages) == 1
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["failed"] == 0 and adds_up(stats)
        warnings = rig.said(1)
        assert len(warnings) == 1 and "SMN.0057" in warnings[0].getMessage()
        rig.check_application_untouched()
        rig.check_no_secrets()


# --- faults that last: retried until the alert is too old, then given up --------------------------------
@dataclass(frozen=True)
class Outage:
    """A fault that lasts; ``url`` replaces the server's URL when the fault is that nothing answers."""

    name: str
    fault: Optional[Fault] = None
    url: Optional[Callable[[], str]] = None
    said: str = ""


OUTAGES = [
    Outage("503 for ever", SERVER_SIDE[2], said="status=503"),
    Outage(
        "429 without Retry-After for ever",
        Fault("429", _fail(429, "APIG.0308", "Too many requests.", "gateway"), "APIG.0308"),
        said="APIG.0308",
    ),
    Outage("connection closed for ever", SERVER_SIDE[-1], said="cannot reach SMN"),
    Outage("read timeout for ever", READ_TIMEOUT, said="no answer in time"),
    Outage("connection refused", url=closed_port_url, said="cannot reach SMN"),
    Outage("DNS failure", url=lambda: "http://smn-alert-test.invalid", said="cannot reach SMN"),
]


class TestGivenUp:
    @pytest.mark.parametrize("outage", OUTAGES, ids=lambda o: o.name)
    def test_a_lasting_fault_is_retried_until_max_age_then_counted_failed(
        self, outage: Outage, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """SMN down, unreachable or unresolvable: retried with backoff, given up at the max alert age.

        Retries: yes, until the alert is ``max_retry_age`` old; here exactly 2 attempts (the clock jumps
        past the age after the first). Reported: one warning on the first failure, one when it gives up
        (``max_retry_age=30`` puts the give-up inside the 60 s diagnostic rate limit: it must not be
        swallowed as a repeat, or nobody learns that a page was lost).
        Outcome: ``failed``, nothing pending, the counters add up, flush() says True.
        """
        fault = outage.fault
        client: dict[str, Any] = dict(fault.client or {}) if fault else {"timeout": 0.5}
        if outage.url is not None:
            client["endpoint_url"] = outage.url()
        rig = make_rig(max_retry_age=SHORT_MAX_AGE, **client)
        if fault is not None:
            fault.inject(server, 10)
        rig.log()
        stats = rig.wait_stats("the first attempt to fail", lambda s: s["retried"] == 1)
        assert outage.said in str(stats["last_error"])
        rig.clock.advance(SHORT_MAX_AGE + 1)
        assert rig.handler.flush(5.0) is True
        stats = rig.stats()
        assert stats["failed"] == 1 and stats["sent"] == 0 and stats["pending"] == 0, stats
        assert stats["retried"] == 1 and stats["received"] == 1 and adds_up(stats)
        assert "gave up" in str(stats["last_error"])
        assert len(server.requests) == (2 if fault is not None else 0)
        assert server.messages == [] or fault is READ_TIMEOUT  # a slow SMN may still have taken them
        warnings = rig.said(2)
        assert len(warnings) == 2, [r.getMessage() for r in warnings]
        assert outage.said in warnings[0].getMessage() and "retry" in warnings[0].getMessage()
        assert "not delivered" in warnings[1].getMessage()
        rig.check_application_untouched()
        rig.check_no_secrets()

    def test_alerts_behind_an_open_circuit_expire_at_max_age(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """Alerts waiting behind an open circuit longer than the max age are counted failed, not kept."""
        rig = make_rig(max_retry_age=60.0)
        server.fail_next(1, status=403, code="SMN.0070", message="The account is in arrears.")
        rig.log("first")
        rig.wait_stats("the 403", lambda s: s["failed"] == 1)
        rig.log("second, behind the open circuit")
        assert rig.handler.flush(2.0) is False  # returns once the worker holds it behind the circuit
        rig.clock.advance(61)
        rig.log("third, wakes the worker")  # a fake clock does not wake it; a new alert does
        stats = rig.wait_stats("the waiting alert to expire", lambda s: s["failed"] == 2)
        assert stats["pending"] == 1 and stats["sent"] == 0 and stats["received"] == 3 and adds_up(stats)
        assert len(server.requests) == 1

    def test_worker_sleeps_while_old_alerts_wait_behind_an_open_circuit(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """An alert past the max age behind an open circuit: the worker stays idle, it does not spin a CPU."""
        rig = make_rig(max_retry_age=60.0)
        server.fail_next(1, status=403, code="SMN.0070", message="The account is in arrears.")
        rig.log("first")
        rig.wait_stats("the 403", lambda s: s["failed"] == 1)
        rig.log("second, behind the open circuit")
        assert rig.handler.flush(2.0) is False  # returns once the worker holds it behind the circuit
        rig.clock.advance(61)
        rig.log("third, wakes the worker")
        assert rig.handler.flush(2.0) is False
        cpu = time.process_time()
        time.sleep(0.3)  # an observation window: an idle worker uses no CPU in it, a spinning one all of it
        assert time.process_time() - cpu < 0.1, "the worker thread busy-loops"


# --- faults a retry cannot fix: no retry loop, a circuit instead -----------------------------------------
AUTH_FAULTS = [
    Fault(
        "401 bad signature",
        _fail(401, "APIG.0301", "Incorrect IAM authentication information.", "gateway"),
        "APIG.0301",
    ),
    Fault(
        "403 account in arrears SMN.0070", _fail(403, "SMN.0070", "The account is in arrears."), "SMN.0070"
    ),
    Fault("403 no permission SMN.0001", _fail(403, "SMN.0001", "No permission."), "SMN.0001"),
]


class TestCircuit:
    @pytest.mark.parametrize("fault", AUTH_FAULTS, ids=lambda f: f.name)
    def test_auth_or_permission_error_opens_the_circuit_not_a_retry_loop(
        self, fault: Fault, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """401/403: never retried; the circuit opens: the next alert is held, then sent after the cooldown.

        Retries: no (1 request for the first alert). A second alert logged at once is not sent while the
        circuit is open (still exactly 1 request), and goes out as the trial after the cooldown (2).
        Reported: one warning when paging stops, one info line when it works again.
        Outcome: first alert ``failed``, second ``sent``.
        """
        rig = make_rig()
        fault.inject(server, 1)
        rig.log("first")
        stats = rig.wait_stats("the refusal", lambda s: s["failed"] == 1)
        assert stats["retried"] == 0 and stats["pending"] == 0 and adds_up(stats)
        rig.log("second, right after")
        started = time.monotonic()
        assert rig.handler.flush(1.0) is False  # blocked by the circuit: returns at once, does not send
        assert time.monotonic() - started < 0.5
        assert len(server.requests) == 1
        stats = rig.stats()
        assert stats["pending"] == 1 and adds_up(stats)
        rig.clock.advance(COOLDOWN + 1)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 2 and len(server.messages) == 1
        assert "second, right after" in server.messages[0].message
        stats = rig.stats()
        assert stats["failed"] == 1 and stats["sent"] == 1 and stats["retried"] == 0 and adds_up(stats)
        warnings = rig.said(1)
        assert len(warnings) == 1 and fault.said in warnings[0].getMessage()
        assert "not delivered" in warnings[0].getMessage()
        recovered = [r for r in rig.said(2, logging.INFO) if r.levelno == logging.INFO]
        assert len(recovered) == 1, "recovery is not said"
        rig.check_application_untouched()
        rig.check_no_secrets()

    @pytest.mark.parametrize(
        ("credentials", "secret"),
        [({"sk": WRONG_SK}, WRONG_SK), ({"ak": None, "sk": None, "auth_token": WRONG_TOKEN}, WRONG_TOKEN)],
        ids=["wrong sk", "wrong token"],
    )
    def test_wrong_credentials_never_approach_the_lockout(
        self, credentials: dict[str, Any], secret: str, make_rig: MakeRig
    ) -> None:
        """Wrong SK or token: 1 request, circuit open; one trial per (doubling) cooldown, never a loop.

        SMN locks an AK after 5 bad signatures. Retries: no; alerts logged while open send nothing; after
        the cooldown one trial goes (2 requests), fails, and the cooldown doubles (still 2 at +301 s).
        Reported: one warning, without the SK or token. Outcome: every alert ``failed`` or ``pending``.
        """
        with FakeSMNServer(auth_token=SERVER_TOKEN) as fake:
            rig = make_rig(**{**fake.settings(), **credentials})
            rig.log("first")
            rig.wait_stats("the 401", lambda s: s["failed"] == 1)
            for index in range(5):
                rig.log(f"while open {index}")
            assert rig.handler.flush(0.3) is False
            assert len(fake.requests) == 1 and fake.requests[0].status == 401
            rig.clock.advance(COOLDOWN + 1)
            rig.handler.flush(0.5)
            stats = rig.wait_stats("the trial to fail", lambda s: s["failed"] == 6)
            assert len(fake.requests) == 2 and fake.messages == []
            rig.log("after the failed trial")
            rig.clock.advance(COOLDOWN + 1)
            assert rig.handler.flush(0.3) is False  # the second cooldown is twice as long
            assert len(fake.requests) == 2
            stats = rig.stats()
            assert stats["sent"] == 0 and stats["retried"] == 0 and stats["pending"] == 1 and adds_up(stats)
            warnings = rig.said(1)
            assert len(warnings) == 1 and "APIG.0301" in warnings[0].getMessage()
            rig.check_application_untouched()
            rig.check_no_secrets(secret)
            rig.logger.removeHandler(rig.handler)
            rig.handler.close()


class TestPartialDelivery:
    def test_refused_numbers_are_reported_and_the_others_not_resent(
        self, server: FakeSMNServer, make_rig: MakeRig
    ) -> None:
        """One number refused inside a 200 answer: no retry; the refused number is reported, masked.

        Retries: no (1 request; the number that got it is not paged again). Reported: one warning with
        the masked number and its code. Outcome: ``sent`` (delivered to one number), ``refused`` 1.
        """
        rig = make_rig()
        server.refuse(NUMBERS[1], code="SMN.0160", message="Invalid phone number.")
        rig.log()
        stats = rig.wait_stats("the page", lambda s: s["pages"] == 1)
        assert rig.handler.flush(5.0) is True
        assert len(server.requests) == 1
        assert server.messages[0].delivered == (NUMBERS[0],)
        stats = rig.stats()
        assert stats["sent"] == 1 and stats["refused"] == 1 and stats["retried"] == 0 and adds_up(stats)
        assert stats["delivered"] == {"+86138****0001": 1}
        warnings = rig.said(1)
        assert len(warnings) == 1
        assert "+86138****0002" in warnings[0].getMessage() and "SMN.0160" in warnings[0].getMessage()
        rig.check_application_untouched()
        rig.check_no_secrets()

    def test_every_number_refused_counts_as_failed(self, server: FakeSMNServer, make_rig: MakeRig) -> None:
        """Every number refused: nothing was delivered, so the alert is ``failed``, not ``sent``; no retry."""
        rig = make_rig()
        for number in NUMBERS:
            server.refuse(number, code="SMN.0160", message="Invalid phone number.")
        rig.log()
        stats = rig.wait_stats("the refusal", lambda s: s["failed"] == 1)
        assert stats["sent"] == 0 and stats["pending"] == 0 and adds_up(stats)
        assert len(server.requests) == 1
        warnings = rig.said(1)
        assert len(warnings) == 1 and "SMN.0160" in warnings[0].getMessage()
        rig.check_application_untouched()
        rig.check_no_secrets()


# --- many threads at once -------------------------------------------------------------------------------
class TestConcurrency:
    THREADS = 16
    PER_THREAD = 300

    def test_sixteen_threads_logging_at_once_are_counted_exactly(self, server: FakeSMNServer) -> None:
        """16 threads logging at once through a real handler: each error counted once, SMS totals agree."""
        connection: dict[str, Any] = dict(server.settings())
        handler = SMNHandler(endpoints=NUMBERS, sign_id=SIGN_ID, budget=100, **connection)
        logger = logging.getLogger(f"app.faults.threads.{uuid.uuid4().hex[:8]}")
        logger.propagate = False
        logger.addHandler(handler)
        errors: list[BaseException] = []
        barrier = threading.Barrier(self.THREADS)

        def log_many(worker: int) -> None:
            try:
                barrier.wait()
                for index in range(self.PER_THREAD):
                    logger.error("worker %d failed on item %d", worker % 4, index)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=log_many, args=(n,)) for n in range(self.THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert errors == []
            assert handler.flush(10.0) is True
            stats: dict[str, Any] = handler.stats()
            logged = self.THREADS * self.PER_THREAD
            assert stats["received"] == logged and stats["pending"] == 0 and adds_up(stats)
            assert (
                stats["sent"] + stats["folded"] == logged and stats["failed"] == 0 and stats["dropped"] == 0
            )
            texts = [message.message for message in server.messages]
            assert len(texts) == stats["pages"]
            assert sum(_alerts_in(text) for text in texts) == logged, texts
        finally:
            logger.removeHandler(handler)
            handler.close()


def _alerts_in(text: str) -> int:
    """How many alerts one SMS accounts for: ``x1,234`` per kind, ``+N more``, or 1 for a single alert."""
    counts = [int(n.replace(",", "")) for n in re.findall(r" x([\d,]+)", text)]
    more = [int(n.replace(",", "")) for n in re.findall(r"\+([\d,]+) more", text)]
    return sum(counts) + sum(more) if counts or more else 1


# --- the fake's own fault commands for hostile answers --------------------------------------------------
def raw_post(server: FakeSMNServer) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """POST anything to the fake (faults apply before authentication); return the connection and answer."""
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
    connection.request("POST", f"/v2/{server.project_id}/notifications/sms", body=b"{}")
    return connection, connection.getresponse()


class TestFakeFaultCommands:
    @pytest.mark.parametrize("framing", ["length", "chunked", "close"])
    def test_a_huge_answer_is_valid_http_in_each_framing(
        self, framing: Literal["length", "chunked", "close"], server: FakeSMNServer
    ) -> None:
        """huge_next() writes exactly the size asked, framed as asked, and counts it in answered_bytes."""
        server.huge_next(mebibytes=3, framing=framing, status=502)
        connection, answer = raw_post(server)
        with contextlib.closing(connection):
            body = answer.read()
        assert (answer.status, len(body)) == (502, 3 << 20)
        assert body.startswith(b"<p>This is not SMN")
        assert answer.getheader("Content-Length") == (str(3 << 20) if framing == "length" else None)
        assert (answer.getheader("Transfer-Encoding") == "chunked") == (framing == "chunked")
        assert answered_bytes(server, 0) == 3 << 20

    def test_a_drip_paces_the_body_of_the_next_answer(self, server: FakeSMNServer) -> None:
        """drip(100) writes a 40-byte body 10 bytes every 0.1 s: the whole body takes at least 0.4 s."""
        server.malformed_next(body=b"0123456789" * 4, content_type="text/plain")
        server.drip(100, n=1)
        connection, answer = raw_post(server)
        with contextlib.closing(connection):
            started = time.monotonic()
            body = answer.read()
            took = time.monotonic() - started
        assert body == b"0123456789" * 4
        assert took >= 0.35, took
        assert answered_bytes(server, 0) == 40

    def test_stop_cuts_a_drip_short(self, server: FakeSMNServer) -> None:
        """stop() does not wait for a drip of a byte a second: it closes that connection."""
        server.huge_next(mebibytes=1)
        server.drip(1)
        connection, answer = raw_post(server)
        with contextlib.closing(connection):
            started = time.monotonic()
            server.stop(timeout=5.0)
            assert time.monotonic() - started < 4.0
            with pytest.raises((http.client.IncompleteRead, OSError)):
                answer.read()
        assert answered_bytes(server, 0) < 10

    @pytest.mark.parametrize(
        "command",
        [
            lambda s: s.huge_next(framing="gzip"),
            lambda s: s.huge_next(mebibytes=-1),
            lambda s: s.huge_next(mebibytes=float("inf")),
            lambda s: s.huge_next(0),
            lambda s: s.drip(0),
            lambda s: s.drip(float("nan")),
            lambda s: s.drip(float("inf")),
            lambda s: s.drip(1, n=0),
        ],
        ids=["framing", "size", "inf-size", "n", "rate", "nan", "inf", "drip-n"],
    )
    def test_bad_arguments_are_refused(self, command: Callable[[FakeSMNServer], None]) -> None:
        with pytest.raises(ValueError):
            command(FakeSMNServer())
