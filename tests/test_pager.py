"""The pager's decisions, driven by a fake clock: no threads, no sleeps, no HTTP."""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest

from smn_alert._alert import Alert, level_band
from smn_alert._build import build_dispatcher
from smn_alert._compose import GroupSummary, PageContext
from smn_alert._pager import MAX_SLEEP, Page, Pager
from smn_alert._ratelimit import CircuitBreaker, RetryPolicy, TokenBucket
from smn_alert._senders import Delivery, Refusal
from smn_alert._settings import PagerSettings
from smn_alert.errors import (
    SMNAuthError,
    SMNConfigError,
    SMNError,
    SMNRequestError,
    SMNServerError,
    SMNThrottledError,
)
from smn_alert.testing import FakeClock

from .conftest import SIGN_ID, RecordingSender

NUMBER = "+8613800000000"


def alert(message: str = "db timeout", *, level: int = logging.ERROR, logger: str = "app.db") -> Alert:
    return Alert(level, logging.getLevelName(level), logger, message, message, created=1_700_000_000.0)


def make_pager(clock: FakeClock, *, budget: int = 5, window: float = 300.0, max_groups: int = 200) -> Pager:
    return Pager(
        PageContext(prefix="shop"),
        TokenBucket(budget, 600.0, clock=clock),
        CircuitBreaker(300.0, 1800.0, clock=clock),
        RetryPolicy(max_age=900.0),
        window=window,
        max_groups=max_groups,
        rng=random.Random(7),
        wall=lambda: 1_700_000_000.0,
    )


def deliver(pager: Pager, page: Page, now: float) -> None:
    assert pager.settle(page, Delivery(delivered=(NUMBER,)), now) is None


def ledger(pager: Pager) -> int:
    c = pager.ledger
    return c.sent + c.folded + c.suppressed + c.dropped + c.failed + pager.pending


class TestFirstPageAndFolding:
    def test_first_alert_after_quiet_spell_is_due_at_once(self) -> None:
        """An alert after a quiet spell becomes a page immediately, naming level, logger and message."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert("payment failed"), clock())
        page = pager.take_due(clock())
        assert page is not None
        assert page.text.startswith("shop")
        assert "ERROR" in page.text and "app.db" in page.text and "payment failed" in page.text

    def test_alerts_within_the_window_wait_for_one_digest(self) -> None:
        """After a page, alerts are folded until the window ends, then sent as one digest with counts."""
        clock = FakeClock()
        pager = make_pager(clock, window=300.0)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        for _ in range(1234):
            pager.add(alert(), clock.advance(0.1))
        for _ in range(3):
            pager.add(alert("cache miss storm", logger="app.cache"), clock())
        assert pager.take_due(clock()) is None
        assert pager.next_wakeup(clock()) == pytest.approx(1000.0 + 300.0)
        digest = pager.take_due(clock.advance(300.0))
        assert digest is not None
        assert "1,234" in digest.text and "cache miss storm" in digest.text
        deliver(pager, digest, clock())
        assert (pager.ledger.sent, pager.ledger.folded) == (1 + 2, 1237 - 2)
        assert ledger(pager) == pager.ledger.received == 1238

    def test_spell_is_quiet_again_after_an_empty_window(self) -> None:
        """A window without alerts ends the spell: the next alert pages at once again."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        assert pager.take_due(clock.advance(301.0)) is None  # the window closes empty
        pager.add(alert("new trouble"), clock.advance(1.0))
        page = pager.take_due(clock())
        assert page is not None and "new trouble" in page.text

    def test_something_worse_than_what_was_paged_does_not_wait(self) -> None:
        """A CRITICAL during a window opened by an ERROR page goes out at once."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        pager.add(alert(), clock.advance(5))
        assert pager.take_due(clock()) is None
        pager.add(alert("database down", level=logging.CRITICAL), clock.advance(5))
        page = pager.take_due(clock())
        assert page is not None and "database down" in page.text and page.text.index("CRITICAL") < 20

    def test_force_skips_the_window(self) -> None:
        """A flush sends folded alerts before the window ends."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        pager.add(alert(), clock.advance(1))
        assert pager.take_due(clock()) is None
        assert pager.take_due(clock(), force=True) is not None

    @pytest.mark.parametrize("level", [logging.CRITICAL, 55], ids=["critical", "custom-55"])
    def test_a_critical_beyond_the_kinds_limit_still_escalates(self, level: int) -> None:
        """Past max_groups kinds, a new CRITICAL (or a custom level above it) is counted with other CRITICALs
        and pages at once."""
        clock = FakeClock()
        pager = make_pager(clock, max_groups=3)
        pager.add(alert("first"), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        for index in range(5):
            pager.add(alert(f"kind {index}", logger=f"app.{index}"), clock.advance(1))
        assert pager.take_due(clock()) is None
        pager.add(alert("disk gone", level=level, logger="app.disk"), clock.advance(1))
        page = pager.take_due(clock())
        assert page is not None and page.text.startswith("shop CRITICAL")
        deliver(pager, page, clock())
        assert ledger(pager) == pager.ledger.received == 7

    def test_a_page_that_cannot_be_composed_still_goes_out(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """If writing the text fails (a bug), a plain page goes out and no alert is lost from the ledger."""

        def broken(*_: object) -> str:
            raise RuntimeError("bug")

        monkeypatch.setattr("smn_alert._pager.compose", broken)
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None and page.text.startswith("smn_alert: 1 alerts")
        assert page.trouble is not None and "RuntimeError" in page.trouble  # the dispatcher logs it
        deliver(pager, page, clock())
        assert pager.ledger.sent == 1 and ledger(pager) == 1

    def test_distinct_kinds_are_bounded(self) -> None:
        """Past max_groups distinct kinds, the rest are counted together and still add up."""
        clock = FakeClock()
        pager = make_pager(clock, max_groups=10)
        for index in range(50):
            pager.add(alert(f"kind {index}", logger=f"app.{index}"), clock())
        page = pager.take_due(clock())
        assert page is not None and len(page.groups) == 11 and page.alerts == 50
        deliver(pager, page, clock())
        assert ledger(pager) == 50


class TestLevelBands:
    @pytest.mark.parametrize(
        ("levelno", "band"),
        [(-5, 0), (0, 0), (9, 0), (10, 10), (19, 10), (25, 20), (39, 30), (40, 40), (49, 40), (50, 50),
         (51, 50), (10_000, 50)],
    )  # fmt: skip
    def test_a_level_falls_in_the_band_of_the_standard_level_at_or_below_it(
        self, levelno: int, band: int
    ) -> None:
        """Six bands in all; anything at or above CRITICAL is CRITICAL."""
        assert level_band(levelno) == band

    def test_thousands_of_custom_levels_keep_the_groups_bounded(self) -> None:
        """10,000 kinds at 10,000 distinct custom levels: at most one "other kinds" group per band."""
        clock = FakeClock()
        pager = make_pager(clock, max_groups=200)
        levels = list(range(11, 10_011))  # DEBUG+1 ... far above CRITICAL: every band but NOTSET
        random.Random(3).shuffle(levels)
        for levelno in levels:
            pager.add(alert("disk slow", level=levelno), clock())
        page = pager.take_due(clock())

        assert page is not None and page.alerts == 10_000
        assert len(page.groups) <= 200 + 5
        assert sum(group.count for group in page.groups) == 10_000
        others = [group for group in page.groups if group.alert.message == "alerts of other kinds"]
        assert sorted(group.alert.levelno for group in others) == [10, 20, 30, 40, 50]
        assert page.text.startswith("shop CRITICAL x")  # critical ones first, counted by band
        assert "CRITICAL x9," in page.text and "alerts of other kinds" in page.text
        deliver(pager, page, clock())
        assert ledger(pager) == pager.ledger.received == 10_000

    def test_dropped_alerts_of_custom_levels_share_their_band(self) -> None:
        """Alerts the buffer only counted, at thousands of levels, add up in a group per band."""
        clock = FakeClock()
        pager = make_pager(clock)
        for levelno in range(41, 3041):
            pager.add_dropped(alert("queue full", level=levelno), 2, clock(), other=True)
        page = pager.take_due(clock())

        assert page is not None and len(page.groups) == 2  # ERROR (41-49) and CRITICAL (50 and up)
        assert sorted(group.count for group in page.groups) == [18, 5982]
        assert "6,000 of these only counted" in page.text
        deliver(pager, page, clock())
        assert ledger(pager) == pager.ledger.received == 6000


class TestWakeup:
    def test_next_wakeup_is_always_a_wait_a_thread_can_do(self) -> None:
        """A budget that can never refill says "never"; the worker still gets a finite, short wait."""
        clock = FakeClock()
        pager = Pager(PageContext(), TokenBucket(0.5, 600.0, clock=clock), CircuitBreaker(300.0, 1800.0,
                      clock=clock), RetryPolicy(), rng=random.Random(1))  # fmt: skip
        pager.add(alert(), clock())
        assert pager.take_due(clock()) is None  # held back: the bucket never holds a whole token
        wake = pager.next_wakeup(clock())

        assert wake is not None and 0 <= wake - clock() <= MAX_SLEEP
        assert threading.Event().wait(min(0.0, wake - clock())) is False  # no OverflowError

    def test_a_long_window_is_looked_at_within_max_sleep(self) -> None:
        """After a page with a day-long window, the worker looks again within MAX_SLEEP, not a day."""
        clock = FakeClock()
        pager = make_pager(clock, window=86_400.0)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        assert pager.next_wakeup(clock()) == clock() + MAX_SLEEP

    @pytest.mark.parametrize(
        ("window", "max_groups", "named"),
        [(1e10, 200, "window=10000000000.0"), (float("nan"), 200, "window=nan"), (0, 200, "window=0"),
         (float("inf"), 200, "window=inf"), (300.0, 0, "max_groups=0")],
    )  # fmt: skip
    def test_absurd_limits_are_refused_at_construction(
        self, window: float, max_groups: int, named: str
    ) -> None:
        """A window no thread could wait for is a configuration error, not a traceback every second."""
        with pytest.raises(SMNConfigError, match=f"^{named}: must be"):
            make_pager(FakeClock(), window=window, max_groups=max_groups)


class TestBudget:
    def test_over_budget_alerts_are_held_and_the_next_sms_says_so(self) -> None:
        """With the budget spent, pages wait; the next SMS says how many were held back and since when."""
        clock = FakeClock()
        pager = make_pager(clock, budget=1, window=60.0)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        for _ in range(40):
            pager.add(alert(), clock.advance(1))
        assert pager.take_due(clock.advance(60)) is None  # window over, but no token
        wake = pager.next_wakeup(clock())
        assert wake is not None and wake == pytest.approx(1000.0 + 600.0)
        page = pager.take_due(clock.advance(wake - clock()))
        assert page is not None and "40 of these held back" in page.text
        deliver(pager, page, clock())
        assert pager.ledger.suppressed == 39 and ledger(pager) == 41

    def test_shutdown_may_override_a_spent_budget_once(self) -> None:
        """The last page at shutdown goes out even when the budget is spent."""
        clock = FakeClock()
        pager = make_pager(clock, budget=1)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        pager.add(alert("last words"), clock.advance(1))
        assert pager.take_due(clock(), force=True) is None
        page = pager.take_due(clock(), force=True, override_budget=True)
        assert page is not None and "last words" in page.text


class TestFailures:
    def test_server_errors_are_retried_with_backoff_and_merged(self) -> None:
        """A 503 puts the page back; the retry waits for its backoff and includes what came meanwhile."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        note = pager.settle(page, SMNServerError("busy", status=503), clock())
        assert note is not None and note[0] == "retry" and "retry 1" in note[1]
        pager.add(alert(), clock.advance(0.001))
        wake = pager.next_wakeup(clock())
        assert wake is not None and wake > clock()  # seeded jitter: the backoff is not zero
        assert pager.take_due(clock(), force=True) is None  # a flush does not skip a backoff
        retry = pager.take_due(clock.advance(wake - clock()))
        assert retry is not None and retry.alerts == 2
        deliver(pager, retry, clock())
        assert pager.ledger.retried == 1 and ledger(pager) == 2 and pager.ledger.failed == 0

    def test_retry_after_is_honoured(self) -> None:
        """A 429 with Retry-After: 30 is not retried before 30 seconds."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        pager.settle(page, SMNThrottledError("slow down", status=429, retry_after=30.0), clock())
        assert pager.take_due(clock.advance(29.0)) is None
        assert pager.take_due(clock.advance(1.5)) is not None

    def test_retries_give_up_when_the_alert_is_too_old(self) -> None:
        """A server that keeps failing: after max_age the alerts count as failed, not retried forever."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        attempts = 0
        while pager.ledger.failed == 0 and attempts < 100:
            wake = pager.next_wakeup(clock())
            assert wake is not None
            page = pager.take_due(clock.advance(max(0.0, wake - clock())))
            if page is None:
                continue
            attempts += 1
            pager.settle(page, SMNServerError("down", status=502), clock())
        assert pager.ledger.failed == 1 and pager.pending == 0
        assert clock() - 1000.0 <= 900.0 + 60.0
        assert attempts > 3

    def test_a_retry_after_beyond_max_age_gets_one_last_try_at_the_edge(self) -> None:
        """Retry-After 1 h, max_age 15 min: one more try just before the alert is too old, then give up."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        throttled = SMNThrottledError("slow down", status=429, retry_after=3600.0)
        note = pager.settle(page, throttled, clock.advance(0.2))  # the answer took 0.2 s

        assert note is not None and note[0] == "retry" and "last try" in note[1]
        assert pager.ledger.failed == 0 and pager.pending == 1
        assert pager.next_wakeup(clock()) == pytest.approx(1000.0 + 900.0 - 1.0)
        assert pager.take_due(clock.advance(898.3)) is None
        last = pager.take_due(clock.advance(0.5))
        assert last is not None and last.alerts == 1
        note = pager.settle(last, throttled, clock())
        assert note is not None and note[0] == "undelivered" and "gave up retrying" in note[1]
        assert pager.ledger.failed == 1 and pager.pending == 0 and pager.ledger.retried == 1

    def test_the_last_try_at_the_edge_can_deliver(self) -> None:
        """If the server is fine again by then, the last try delivers the alert."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        pager.settle(page, SMNThrottledError("slow down", status=429, retry_after=1e6), clock.advance(0.2))
        last = pager.take_due(clock.advance(898.8))
        assert last is not None
        deliver(pager, last, clock())
        assert pager.ledger.sent == 1 and pager.ledger.failed == 0

    @pytest.mark.parametrize(
        "error",
        [SMNAuthError("bad signature", status=401, code="APIG.0301"),
         SMNRequestError("sensitive words", status=400, code="SMN.0227")],
    )  # fmt: skip
    def test_errors_a_retry_cannot_fix_open_the_circuit(self, error: Exception) -> None:
        """Auth and content errors are not retried; the circuit stays open for its cooldown."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        note = pager.settle(page, error, clock())  # type: ignore[arg-type]
        assert note is not None and note[0] == "undelivered" and "1 alert not delivered" in note[1]
        assert pager.ledger.failed == 1 and pager.ledger.retried == 0
        pager.add(alert("still broken"), clock.advance(10))
        assert pager.take_due(clock(), force=True) is None
        trial = pager.take_due(clock.advance(300.0))
        assert trial is not None and "1 undelivered earlier" in trial.text
        note = pager.settle(trial, Delivery(delivered=(NUMBER,)), clock())
        assert note == ("recovered", "paging works again")
        assert not pager.breaker.is_open

    def test_alerts_behind_an_open_circuit_expire(self) -> None:
        """Alerts waiting behind an open circuit longer than max_age are counted as failed."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.breaker.open("test")
        pager.breaker._cooldown = 5000.0  # a long outage
        pager.add(alert(), clock())
        assert pager.take_due(clock()) is None
        wake = pager.next_wakeup(clock())
        assert wake is not None and wake == pytest.approx(1000.0 + 900.0)
        assert pager.take_due(clock.advance(901.0)) is None
        assert pager.ledger.failed == 1 and pager.pending == 0

    def test_expiry_forgets_the_retry_it_cuts_short(self) -> None:
        """A retried page that expires behind an open circuit leaves no paid-for retry behind it."""
        clock = FakeClock()
        pager = make_pager(clock, budget=1)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        pager.settle(page, SMNServerError("down", status=503), clock())
        pager.breaker.open("credentials revoked meanwhile")
        pager.breaker._cooldown = 5000.0
        assert pager.take_due(clock.advance(901.0)) is None
        assert pager.ledger.failed == 1
        pager.breaker.record_success()
        pager.add(alert("later"), clock.advance(1))
        assert pager.bucket.next_available() == 0  # the budget refilled meanwhile ...
        assert pager.take_due(clock()) is not None
        assert pager.bucket.next_available() > 0  # ... and the new page paid for itself

    def test_refused_numbers_are_reported_not_resent(self) -> None:
        """Numbers refused inside a batch are reported; the page still counts as delivered."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        delivery = Delivery(delivered=(NUMBER,), refused=(Refusal("+8613900000000", "SMN.0160", "bad"),))
        note = pager.settle(page, delivery, clock())
        assert note is not None and note[0] == "refused"
        assert "SMN.0160" in note[1] and "+8613900000000" not in note[1]
        assert pager.ledger.refused == 1 and pager.ledger.pages == 1 and pager.pending == 0

    def test_every_number_refused_is_a_failure(self) -> None:
        """When SMN refused every number, the alerts count as failed and the circuit opens."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        pager.settle(page, Delivery(delivered=(), refused=(Refusal(NUMBER, "SMN.0057", "limit"),)), clock())
        assert pager.ledger.failed == 1 and pager.breaker.is_open


class TestDropped:
    def test_dropped_alerts_are_said_in_the_next_page(self) -> None:
        """Alerts the buffer had no room for are counted and reported in the next SMS."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        pager.add_dropped(alert(), 977, clock())
        pager.add_dropped(alert("cache storm", logger="app.cache"), 20, clock())
        pager.add_dropped(alert("kinds overflowed", logger="app.x"), 3, clock(), other=True)
        page = pager.take_due(clock())
        assert page is not None
        assert "x978" in page.text and "x20" in page.text and "x3" in page.text
        assert "1,000 of these only counted" in page.text
        deliver(pager, page, clock())
        assert pager.ledger.dropped == 1000 and pager.ledger.sent == 1 and ledger(pager) == 1001


class TestLedger:
    def test_counters_always_add_up(self) -> None:
        """Under a random mix of alerts, failures, refusals and time, each alert is in exactly one counter."""
        rng = random.Random(42)
        clock = FakeClock()
        pager = make_pager(clock, budget=3, window=30.0)
        outcomes = [
            *[Delivery(delivered=(NUMBER,))] * 4,
            SMNServerError("503", status=503),
            SMNAuthError("401", status=401),
            Delivery(delivered=(), refused=(Refusal(NUMBER, "SMN.0160", "x"),)),
        ]
        for _ in range(3000):
            roll = rng.random()
            if roll < 0.6:
                pager.add(alert(f"kind {rng.randrange(5)}", level=rng.choice([40, 50])), clock())
            elif roll < 0.65:
                sample = alert(f"kind {rng.randrange(5)}")
                pager.add_dropped(sample, rng.randrange(1, 5), clock(), other=rng.random() < 0.3)
            clock.advance(rng.random() * 5)
            page = pager.take_due(clock(), force=rng.random() < 0.05)
            if page is not None:
                pager.settle(page, rng.choice(outcomes), clock())
            assert ledger(pager) == pager.ledger.received
        assert pager.ledger.sent > 0 and pager.ledger.failed > 0 and pager.ledger.suppressed > 0


SECRET_TEXT = "login refused: password=hunter2 for +8613800000000"


def shown(pager: Pager, note: object) -> str:
    """Everything diagnostics may show after a failure: the note, last_error, the circuit's reason."""
    return f"{note} | {pager.ledger.last_error} | {pager.breaker.last_reason}"


class TestErrorText:
    @pytest.mark.parametrize(
        "error",
        [SMNServerError(SECRET_TEXT, status=503), SMNRequestError(SECRET_TEXT, status=400, code="SMN.0009"),
         SMNAuthError(SECRET_TEXT, status=401)],
    )  # fmt: skip
    def test_smn_error_text_is_redacted_and_numbers_masked(self, error: SMNError) -> None:
        """SMN's own error text reaches the log and stats() only redacted, with phone numbers masked."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        said = shown(pager, pager.settle(page, error, clock()))

        assert "hunter2" not in said and "13800000000" not in said
        assert "password=***" in said and "+86138****0000" in said and "login refused" in said

    def test_refusal_codes_are_scrubbed_too(self) -> None:
        """A refusal's code is server text: a number in it is masked like any other."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        refusal = Refusal(NUMBER, "bad number +8613800000000", "x")
        said = shown(pager, pager.settle(page, Delivery(delivered=(), refused=(refusal,)), clock()))
        assert "13800000000" not in said and "+86138****0000" in said

    @pytest.mark.parametrize(
        "kept",
        ["request_id=4f0e8c1234567a9bc1f2", "code=SMN.0057", "status=503", "retry in 30.5 s", "at 12:05"],
    )
    def test_ids_and_codes_stay_readable(self, kept: str) -> None:
        """Masking hides phone numbers, not request ids, codes or times support needs."""
        clock = FakeClock()
        pager = make_pager(clock)
        pager.add(alert(), clock())
        page = pager.take_due(clock())
        assert page is not None
        pager.settle(page, SMNServerError(f"busy ({kept})", status=503), clock())
        assert kept in str(pager.ledger.last_error)

    def test_stats_and_the_smn_alert_log_never_show_the_secret(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """End to end: a failing send's text in stats()["last_error"] and the warning are scrubbed."""
        sender = RecordingSender()
        sender.outcomes.append(SMNServerError(SECRET_TEXT, status=503))
        settings = PagerSettings.from_kwargs(environ={}, endpoints=[NUMBER], sign_id=SIGN_ID)
        dispatcher = build_dispatcher(settings, sender=sender)
        caplog.set_level(logging.WARNING, logger="smn_alert")
        try:
            dispatcher.submit(alert())
            deadline = time.monotonic() + 10.0
            while dispatcher.stats()["retried"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            last_error = str(dispatcher.stats()["last_error"])
        finally:
            dispatcher.close(timeout=5.0)
        logged = " | ".join(record.getMessage() for record in caplog.records)

        assert "password=***" in last_error and "+86138****0000" in last_error
        assert "+86138****0000" in logged
        for whole in ("hunter2", "13800000000"):
            assert whole not in last_error and whole not in logged


class FakeShare:
    """The pager's view of the processes it shares state with, answering as a test says."""

    def __init__(self, decision: str = "fold") -> None:
        self.decision, self.taking = decision, True
        self.asked: list[int] = []
        self.handed: list[tuple[str, int]] = []
        self.holds = 0

    def first(self, level: int) -> str:
        self.asked.append(level)
        return self.decision

    def hand(self, alert: Alert, count: int, dropped: int, first_seen: float, last_seen: float) -> bool:
        if self.taking:
            self.handed.append((alert.message, count))
        return self.taking

    def hold(self) -> None:
        self.holds += 1


class RefusingBudget:
    """A shared budget another process emptied after this one last looked: ready, yet refused."""

    def next_available(self, n: float = 1.0) -> float:
        return 0.0

    def try_acquire(self, n: float = 1.0) -> bool:
        return False


def shared_pager(clock: FakeClock, share: FakeShare, **kwargs: object) -> Pager:
    pager = make_pager(clock, **kwargs)  # type: ignore[arg-type]
    pager.share = share
    return pager


def with_handed(pager: Pager) -> int:
    return ledger(pager) + pager.ledger.handed


class TestSharedState:
    """With ``shared_state``: the fleet decides first pages, folded counts go to its digest."""

    def test_alerts_of_an_incident_another_process_paged_are_handed_not_paged(self) -> None:
        clock, share = FakeClock(), FakeShare("fold")
        pager = shared_pager(clock, share)
        pager.add(alert(), clock())
        assert pager.take_due(clock()) is None
        for _ in range(3):
            pager.add(alert(), clock.advance(1))
        assert pager.take_due(clock()) is None
        assert share.asked == [logging.ERROR]  # asked once: the window it learnt of covers the rest
        assert share.handed == [("db timeout", 1), ("db timeout", 3)]
        assert pager.ledger.handed == 4 == pager.ledger.received == with_handed(pager)
        assert pager.fold_kinds(clock())  # repeats are counted on the calling thread meanwhile

    def test_the_process_that_pages_hands_its_repeats_to_the_fleets_digest(self) -> None:
        clock, share = FakeClock(), FakeShare("page")
        pager = shared_pager(clock, share)
        pager.add(alert(), clock())
        first = pager.take_due(clock())
        assert first is not None and "db timeout" in first.text
        deliver(pager, first, clock())
        for _ in range(5):
            pager.add(alert(), clock.advance(1))
        assert pager.take_due(clock()) is None  # within the window: handed, whatever else is due
        assert pager.take_due(clock.advance(400)) is None  # past it: no local digest
        assert share.handed == [("db timeout", 5)] and pager.pending == 0
        assert (pager.ledger.sent, pager.ledger.handed) == (1, 5) and with_handed(pager) == 6

    def test_a_worse_level_asks_the_fleet_again(self) -> None:
        clock, share = FakeClock(), FakeShare("fold")
        pager = shared_pager(clock, share)
        pager.add(alert(), clock())
        pager.take_due(clock())
        share.decision = "page"
        pager.add(alert("disk gone", level=logging.CRITICAL), clock.advance(1))
        page = pager.take_due(clock())
        assert share.asked == [logging.ERROR, logging.CRITICAL]
        assert page is not None and "disk gone" in page.text

    def test_without_the_store_it_pages_and_folds_alone(self) -> None:
        clock, share = FakeClock(), FakeShare("local")
        pager = shared_pager(clock, share, window=60.0)
        pager.add(alert(), clock())
        deliver(pager, pager.take_due(clock()), clock())  # type: ignore[arg-type]
        share.taking = False  # the store failed: hand() takes nothing
        for _ in range(7):
            pager.add(alert(), clock.advance(1))
        assert pager.take_due(clock()) is None
        digest = pager.take_due(clock.advance(60))
        assert digest is not None and "x7" in digest.text and share.handed == []

    def test_a_claimed_digest_goes_out_at_once_saying_how_many_processes(self) -> None:
        clock, share = FakeClock(), FakeShare("fold")
        pager = shared_pager(clock, share)
        token = object()
        groups = [GroupSummary(alert(), 2160, 1_700_000_000.0, 1_700_000_040.0)]
        pager.add_claim(token, groups, clock(), processes=12, hosts=3, held_since=None)
        page = pager.take_due(clock())
        assert page is not None and page.claims == [token]
        assert "x2,160 in 40 s from 12 processes on 3 hosts" in page.text
        deliver(pager, page, clock())
        assert pager.ledger.pages == 1 and pager.ledger.received == 0 == with_handed(pager)
        assert (pager.ledger.sent, pager.ledger.folded) == (0, 0)  # the fleet's alerts, not this process's

    def test_a_claimed_digest_that_fails_is_retried_with_its_claim(self) -> None:
        clock, share = FakeClock(), FakeShare("fold")
        pager = shared_pager(clock, share)
        token = object()
        pager.add_claim(token, [GroupSummary(alert(), 9, 1.0, 2.0)], clock(), processes=2, hosts=1,
                        held_since=None)  # fmt: skip
        page = pager.take_due(clock())
        assert page is not None
        pager.settle(page, SMNServerError("busy"), clock())
        assert pager.claims == [token] and pager.claimed == 9 and pager.pending == 0
        retry = pager.take_due(clock.advance(600))
        assert retry is not None and retry.claims == [token] and "x9" in retry.text

    def test_a_claimed_digest_given_up_says_how_many_alerts_were_lost(self) -> None:
        clock, share = FakeClock(), FakeShare("fold")
        pager = shared_pager(clock, share)
        pager.add_claim(object(), [GroupSummary(alert(), 9, 1.0, 2.0)], clock(), processes=2, hosts=1,
                        held_since=None)  # fmt: skip
        page = pager.take_due(clock())
        assert page is not None
        note = pager.settle(page, SMNAuthError("bad key", code="APIGW.0301"), clock())
        assert note is not None and note[1].startswith("9 alerts not delivered")
        assert pager.claims == [] and pager.ledger.failed == 0  # not this process's alerts

    def test_a_shared_budget_refused_after_all_holds_the_page_back(self) -> None:
        clock, share = FakeClock(), FakeShare("page")
        pager = shared_pager(clock, share)
        pager.bucket = RefusingBudget()
        pager.add(alert(), clock())
        assert pager.take_due(clock()) is None
        assert pager.take_due(clock.advance(1)) is None
        assert share.holds == 1  # the fleet hears of the hold once per spell
        assert pager.ledger.last_error is None

    def test_a_pause_from_another_process_stops_sending_then_recovery_is_said(self) -> None:
        clock, share = FakeClock(), FakeShare("page")
        pager = shared_pager(clock, share)
        pager.pause(120.0, "SMN refused the key")
        pager.add(alert(), clock())
        assert pager.take_due(clock()) is None
        page = pager.take_due(clock.advance(121))
        assert page is not None
        recovered = pager.settle(page, Delivery(delivered=(NUMBER,)), clock())
        assert recovered == ("recovered", "paging works again")


class ToggledBudget:
    """A shared budget that refuses until told otherwise."""

    def __init__(self) -> None:
        self.open = False

    def next_available(self, n: float = 1.0) -> float:
        return 0.0 if self.open else 60.0

    def try_acquire(self, n: float = 1.0) -> bool:
        return self.open


class TestSharedStateHeldAndDropped:
    def test_a_page_the_fleet_left_here_waits_for_the_budget_not_the_window(self) -> None:
        """The fleet said "page": held by the budget, it is still this process's to send when it can."""
        clock, share, budget = FakeClock(), FakeShare("page"), ToggledBudget()
        pager = shared_pager(clock, share, window=300.0)
        pager.bucket = budget
        pager.add(alert("disk gone", level=logging.CRITICAL), clock())
        assert pager.take_due(clock()) is None
        share.decision = "fold"  # what the fleet would now say: its window is open
        assert pager.take_due(clock.advance(30)) is None and share.handed == []
        budget.open = True
        page = pager.take_due(clock.advance(30))
        assert page is not None and "disk gone" in page.text and share.asked == [logging.CRITICAL]

    def test_dropped_alerts_handed_over_are_not_said_again_on_a_page_of_their_own(self) -> None:
        clock, share = FakeClock(), FakeShare("fold")
        pager = shared_pager(clock, share, window=60.0)
        pager.add(alert(), clock())
        pager.add_dropped(alert(), 3, clock())
        assert pager.take_due(clock()) is None
        assert share.handed == [("db timeout", 4)]
        assert (pager.ledger.handed, pager.ledger.dropped) == (1, 3) and with_handed(pager) == 4
        assert pager.take_due(clock.advance(61)) is None  # no page saying "3 only counted" alone

    def test_counts_taken_back_keep_the_dropped_ones_dropped(self) -> None:
        clock, share = FakeClock(), FakeShare("fold")
        pager = shared_pager(clock, share, window=60.0)
        pager.add(alert(), clock())
        pager.add_dropped(alert(), 3, clock())
        pager.take_due(clock())
        share.taking = False
        pager.take_back(alert(), 4, 3, 1.0, 2.0, clock())  # the store failed before it got them
        assert (pager.ledger.handed, pager.ledger.dropped, pager.pending) == (0, 3, 1)
        assert with_handed(pager) == pager.ledger.received == 4
