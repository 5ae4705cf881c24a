"""Tests for smn_alert._ratelimit: the SMS budget, the circuit breaker and retry delays, on a fake clock."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

import pytest

from smn_alert._ratelimit import LAST_TRY_MARGIN, Budget, CircuitBreaker, RetryPolicy, TokenBucket
from smn_alert.errors import (
    SMNAuthError,
    SMNConnectionError,
    SMNRequestError,
    SMNServerError,
    SMNThrottledError,
)
from smn_alert.testing import FakeClock


@dataclass
class DuckError:
    """Anything with retryable / retry_after / code is enough for RetryPolicy."""

    retryable: bool
    retry_after: float | None = None
    code: str | None = None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestTokenBucket:
    def test_starts_full(self, clock: FakeClock) -> None:
        """A new bucket lets a whole burst of `capacity` SMS out at once, and no more."""
        bucket = TokenBucket(5, 600, clock)

        assert bucket.tokens == 5
        assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]

    def test_refills_evenly_by_the_clock(self, clock: FakeClock) -> None:
        """After the burst, one SMS becomes available every period/capacity seconds."""
        bucket = TokenBucket(5, 600, clock)
        for _ in range(5):
            bucket.try_acquire()

        clock.advance(119)
        assert not bucket.try_acquire()
        clock.advance(1)
        assert bucket.try_acquire()
        assert not bucket.try_acquire()

    def test_never_holds_more_than_capacity(self, clock: FakeClock) -> None:
        """A long quiet spell does not save up more than one burst."""
        bucket = TokenBucket(3, 60, clock)
        bucket.try_acquire()

        clock.advance(10_000)

        assert bucket.tokens == 3
        assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]

    def test_next_available_is_exact(self, clock: FakeClock) -> None:
        """next_available says how long until the next SMS may go: 0 now, then the exact wait."""
        bucket = TokenBucket(5, 600, clock)
        assert bucket.next_available() == 0.0
        for _ in range(5):
            bucket.try_acquire()

        assert bucket.next_available() == pytest.approx(120.0)
        clock.advance(30)
        assert bucket.next_available() == pytest.approx(90.0)
        assert bucket.next_available(2) == pytest.approx(210.0)

    def test_waiting_next_available_is_enough(self, clock: FakeClock) -> None:
        """Sleeping exactly next_available() seconds makes the token available despite float rounding."""
        bucket = TokenBucket(3, 7, clock)
        for _ in range(3):
            bucket.try_acquire()
        for _ in range(20):
            clock.advance(bucket.next_available())
            assert bucket.try_acquire()

    def test_more_than_capacity_is_never_available(self, clock: FakeClock) -> None:
        """Asking for more than the bucket holds waits forever instead of returning a wrong time."""
        bucket = TokenBucket(2, 60, clock)

        assert bucket.next_available(3) == math.inf
        assert not bucket.try_acquire(3)
        assert bucket.tokens == 2

    def test_failed_acquire_takes_nothing(self, clock: FakeClock) -> None:
        """A refused request for several tokens leaves the ones that are there."""
        bucket = TokenBucket(5, 600, clock)
        for _ in range(3):
            bucket.try_acquire()

        assert not bucket.try_acquire(3)
        assert bucket.tokens == pytest.approx(2)

    def test_clock_stepping_back_takes_no_tokens(self, clock: FakeClock) -> None:
        """A clock that goes backwards neither adds nor removes tokens."""
        bucket = TokenBucket(5, 600, clock)
        bucket.try_acquire()

        clock.advance(-500)

        assert bucket.tokens == pytest.approx(4)

    @pytest.mark.parametrize(
        ("capacity", "period"),
        [
            (0, 600),
            (5, 0),
            (-1, 10),
            (5, -1),
            (5, float("inf")),
            (float("inf"), 600),
            (float("nan"), 600),
            (5, float("nan")),
        ],
    )
    def test_rejects_non_positive_settings(self, capacity: float, period: float) -> None:
        """A bucket that could never refill (or whose refill is not a number) is refused at construction."""
        with pytest.raises(ValueError, match="must both be positive"):
            TokenBucket(capacity, period)


class TestCircuitBreaker:
    def test_closed_allows(self, clock: FakeClock) -> None:
        """A fresh breaker lets every request through."""
        breaker = CircuitBreaker(300, 3600, clock)

        assert breaker.state == "closed"
        assert not breaker.is_open
        assert all(breaker.allow() for _ in range(10))
        assert breaker.reopens_in() == 0.0

    def test_open_refuses_until_cooldown(self, clock: FakeClock) -> None:
        """After open(), nothing goes out until the cooldown has passed, and the reason is kept."""
        breaker = CircuitBreaker(300, 3600, clock)

        breaker.open("APIG.0301 bad signature")

        assert breaker.is_open
        assert breaker.state == "open"
        assert breaker.last_reason == "APIG.0301 bad signature"
        assert not breaker.allow()
        clock.advance(299)
        assert not breaker.allow()
        assert breaker.reopens_in() == pytest.approx(1.0)

    def test_half_open_lets_exactly_one_trial(self, clock: FakeClock) -> None:
        """Once the cooldown is over, exactly one trial request goes out until its result is known."""
        breaker = CircuitBreaker(300, 3600, clock)
        breaker.open("auth")
        clock.advance(300)

        assert breaker.state == "half-open"
        assert [breaker.allow() for _ in range(3)] == [True, False, False]
        assert breaker.state == "half-open"

    def test_failed_trial_doubles_cooldown_up_to_max(self, clock: FakeClock) -> None:
        """Each failed trial waits twice as long as the last, never longer than max_cooldown."""
        breaker = CircuitBreaker(300, 1000, clock)
        breaker.open("auth")
        waits = []
        for _ in range(4):
            clock.advance(breaker.reopens_in())
            assert breaker.allow()
            breaker.record_failure()
            waits.append(breaker.reopens_in())
            assert not breaker.allow()

        assert waits == [600, 1000, 1000, 1000]

    def test_success_closes_and_resets_cooldown(self, clock: FakeClock) -> None:
        """A successful trial reopens the flow, and a later failure starts again from the base cooldown."""
        breaker = CircuitBreaker(300, 3600, clock)
        breaker.open("auth")
        clock.advance(300)
        breaker.allow()
        breaker.record_failure()
        clock.advance(600)
        breaker.allow()

        breaker.record_success()

        assert breaker.state == "closed"
        assert all(breaker.allow() for _ in range(3))
        breaker.open("sign not approved")
        assert breaker.reopens_in() == pytest.approx(300)
        assert breaker.last_reason == "sign not approved"

    def test_open_during_trial_counts_as_failed_trial(self, clock: FakeClock) -> None:
        """Opening the circuit again from the trial (a second auth error) doubles the cooldown."""
        breaker = CircuitBreaker(300, 3600, clock)
        breaker.open("auth")
        clock.advance(300)
        breaker.allow()

        breaker.open("auth again")

        assert breaker.reopens_in() == pytest.approx(600)
        assert breaker.last_reason == "auth again"

    def test_failure_while_closed_does_not_open(self, clock: FakeClock) -> None:
        """Retryable failures are the retry policy's business: they do not stop sending."""
        breaker = CircuitBreaker(300, 3600, clock)

        breaker.record_failure("503")

        assert breaker.allow()
        assert not breaker.is_open

    @pytest.mark.parametrize(
        ("cooldown", "max_cooldown"),
        [(0, 10), (-1, 10), (10, 5), (float("nan"), 10), (10, float("inf")), (float("inf"), float("inf"))],
    )
    def test_rejects_bad_cooldowns(self, cooldown: float, max_cooldown: float) -> None:
        """A breaker that would never reopen, or shrink its cooldown, is refused."""
        with pytest.raises(ValueError, match="cooldown"):
            CircuitBreaker(cooldown, max_cooldown)

    def test_a_trial_that_never_reports_back_is_given_up(self, clock: FakeClock) -> None:
        """A half-open trial that never reports back lets another trial through a cooldown later."""
        breaker = CircuitBreaker(300.0, 1800.0, clock=clock)
        breaker.open("bad signature")
        clock.advance(300.0)
        assert breaker.allow()  # the trial, whose sender then crashes without reporting
        assert not breaker.allow() and breaker.trial_ends_in() == 300.0
        clock.advance(299.0)
        assert not breaker.allow()
        clock.advance(1.0)
        assert breaker.allow() and not breaker.allow()


class TestRetryPolicy:
    @pytest.mark.parametrize(
        "error",
        [
            SMNAuthError("bad signature", status=401, code="APIG.0301", retry_after=5.0),
            SMNRequestError("sensitive words", status=400, code="SMN.0227"),
            DuckError(retryable=False),
        ],
    )
    def test_non_retryable_gives_none(self, error: DuckError) -> None:
        """Auth and content errors are never retried, even when the server named a wait."""
        assert RetryPolicy().delay(0, error, random.Random(1)) is None

    def test_full_jitter_stays_in_exponential_bounds(self) -> None:
        """Each delay lies in [0, min(cap, base * 2**attempt)] and spreads across that range."""
        policy = RetryPolicy(base=1.0, cap=60.0)
        rng = random.Random(20240501)
        error = SMNConnectionError("refused")
        for attempt in range(12):
            ceiling = min(60.0, 2.0**attempt)
            delays = [policy.delay(attempt, error, rng) for _ in range(300)]
            assert all(d is not None and 0.0 <= d <= ceiling for d in delays)
            assert max(d for d in delays if d is not None) > 0.9 * ceiling
            assert min(d for d in delays if d is not None) < 0.1 * ceiling

    def test_same_seed_same_delays(self) -> None:
        """Delays come only from the given Random, so a seed makes them reproducible."""
        policy, error = RetryPolicy(), SMNServerError("503", status=503)

        first = [policy.delay(a, error, random.Random(3)) for a in range(8)]
        second = [policy.delay(a, error, random.Random(3)) for a in range(8)]

        assert first == second

    def test_huge_attempt_does_not_overflow(self) -> None:
        """A worker that has retried for ages still gets a capped delay, not an OverflowError."""
        delay = RetryPolicy(cap=60.0).delay(10_000, SMNServerError("503"), random.Random(0))

        assert delay is not None
        assert 0.0 <= delay <= 60.0

    def test_negative_attempt_is_refused(self) -> None:
        """Attempt numbers start at 0."""
        with pytest.raises(ValueError, match="attempt"):
            RetryPolicy().delay(-1, SMNServerError("503"), random.Random(0))

    def test_retry_after_is_honoured(self) -> None:
        """When the server says Retry-After, no retry comes sooner, whatever the jitter."""
        policy, rng = RetryPolicy(), random.Random(5)
        error = SMNServerError("busy", status=503, retry_after=30.0)

        delays = [policy.delay(attempt, error, rng) for attempt in range(8) for _ in range(50)]

        assert all(d is not None and 30.0 <= d <= 60.0 for d in delays)

    def test_retry_after_is_capped_at_max_age(self) -> None:
        """A Retry-After longer than an alert may wait is cut to max_age."""
        error = SMNThrottledError("slow down", status=429, retry_after=86_400.0)

        assert RetryPolicy(max_age=900.0).delay(0, error, random.Random(0)) == 900.0

    @pytest.mark.parametrize(
        "error",
        [
            SMNThrottledError("throttled", status=429, code="APIG.0308"),
            SMNThrottledError("throttled", status=429, code="SMN.00362"),
            SMNThrottledError("throttled", status=429),
            DuckError(retryable=True, code="APIGW.0308"),
        ],
    )
    def test_throttled_without_retry_after_waits_2_to_5_s(self, error: DuckError) -> None:
        """A 429 without Retry-After waits 2-5 s with jitter, however many attempts came before."""
        policy, rng = RetryPolicy(), random.Random(11)

        delays = [policy.delay(attempt, error, rng) for attempt in (0, 3, 10) for _ in range(200)]

        assert all(d is not None and 2.0 <= d <= 5.0 for d in delays)
        assert len({round(d or 0, 3) for d in delays}) > 100

    def test_per_number_limit_backs_off_long(self) -> None:
        """SMN.0057 (60 SMS per number per hour) waits per_number_backoff, not seconds."""
        error = SMNThrottledError("limit", status=403, code="SMN.0057")

        assert RetryPolicy().delay(0, error, random.Random(0)) == 300.0
        assert RetryPolicy(per_number_backoff=120.0).delay(4, error, random.Random(0)) == 120.0

    def test_give_up_by_age(self) -> None:
        """An alert is given up once the next wait would take it past max_age, not before."""
        policy = RetryPolicy(max_age=900.0)

        assert not policy.should_give_up(first_attempt_at=100.0, now=900.0, next_delay=100.0)
        assert policy.should_give_up(first_attempt_at=100.0, now=900.0, next_delay=100.5)
        assert policy.should_give_up(first_attempt_at=100.0, now=1001.0, next_delay=0.0)

    def test_last_chance_is_just_before_max_age_and_only_once(self) -> None:
        """When the wait asked for outlives the alert, its last try goes LAST_TRY_MARGIN before max_age."""
        policy = RetryPolicy(max_age=900.0)

        assert policy.last_chance(first_attempt_at=100.0, now=100.5) == pytest.approx(
            900.0 - LAST_TRY_MARGIN - 0.5
        )
        assert policy.last_chance(first_attempt_at=100.0, now=1000.0 - LAST_TRY_MARGIN) is None  # that was it
        assert policy.last_chance(first_attempt_at=100.0, now=2000.0) is None

    def test_is_immutable(self) -> None:
        """A policy never changes under a running worker; replace() makes a new one."""
        policy = RetryPolicy()

        with pytest.raises(dataclasses.FrozenInstanceError):
            policy.cap = 1.0  # type: ignore[misc]
        changed = dataclasses.replace(policy, cap=30.0)
        assert (policy.cap, changed.cap) == (60.0, 30.0)

    @pytest.mark.parametrize(
        "changes",
        [
            {"base": 0.0},
            {"cap": 0.5},
            {"max_age": 0.0},
            {"throttle_default": (5.0, 2.0)},
            {"per_number_backoff": -1},
            {"max_age": float("inf")},
            {"max_age": float("nan")},
            {"cap": float("inf")},
            {"throttle_default": (2.0, float("inf"))},
            {"per_number_backoff": float("inf")},
        ],
    )
    def test_rejects_nonsense(self, changes: dict[str, object]) -> None:
        """A policy that would never wait, or wait a negative time, is refused."""
        with pytest.raises(ValueError, match="need"):
            RetryPolicy(**changes)  # type: ignore[arg-type]


class TestBudget:
    def test_a_page_needs_a_token_in_every_bucket(self, clock: FakeClock) -> None:
        """With 5 per 10 minutes and 3 per 12 hours, the fourth page waits for the 12-hour bucket."""
        budget = Budget(TokenBucket(5, 600.0, clock=clock), TokenBucket(3, 43_200.0, clock=clock))
        assert [budget.try_acquire() for _ in range(4)] == [True, True, True, False]
        assert budget.tokens == 0.0
        assert budget.next_available() == 14_400.0  # 12 h / 3: the short bucket refilled long before
        clock.advance(600.0)
        assert not budget.try_acquire()  # the short bucket is full again; nothing was taken from it
        assert budget.buckets[0].tokens == 5.0
        clock.advance(14_400.0 - 600.0)
        assert budget.try_acquire()

    def test_needs_a_bucket(self) -> None:
        """A budget of no buckets is a programming error, said at once."""
        with pytest.raises(ValueError, match="at least one bucket"):
            Budget()
