"""Pure rate-limit decisions: the SMS budget, a circuit breaker and retry delays, on an injected clock."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from smn_alert._smn import PER_NUMBER_LIMIT_CODE, TOO_MANY_REQUESTS_CODES

#: First retry waits up to this many seconds; each further attempt doubles the ceiling.
DEFAULT_BACKOFF_BASE = 1.0
#: No single backoff ceiling is longer than this many seconds (before ``Retry-After`` is honoured).
DEFAULT_BACKOFF_CAP = 60.0
#: An alert older than this many seconds is given up: a page about a 15-minute-old problem is news, not alarm.
DEFAULT_MAX_AGE = 900.0
#: A 429 without ``Retry-After`` is retried after a jittered delay in this range of seconds (SMN: 2-5 s).
DEFAULT_THROTTLE_DELAY: tuple[float, float] = (2.0, 5.0)
#: Seconds to wait after SMN.0057 (a number got 60 SMS this hour); retrying sooner only burns the hour again.
DEFAULT_PER_NUMBER_BACKOFF = 300.0
#: Seconds before an alert would be too old that its last try goes, when the wait asked for is longer.
LAST_TRY_MARGIN = 1.0

_HTTP_TOO_MANY_REQUESTS = 429
# Float refills are not exact: waiting next_available() seconds must really make the tokens available.
_EPSILON = 1e-9
# 2**63 seconds is beyond any cap; a larger exponent would only overflow float().
_MAX_EXPONENT = 63


class RetryableError(Protocol):
    """What :class:`RetryPolicy` needs to know about a failure (``SMNError`` has it all).

    An optional ``status`` attribute of 429 is also treated as throttling when ``code`` is unknown.
    """

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again later can succeed."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait, when it said."""

    @property
    def code(self) -> str | None:
        """SMN's or the gateway's error code, such as ``SMN.0057``."""


class TokenBucket:
    """``capacity`` tokens that refill evenly over ``period`` seconds; starts full.

    Not thread-safe, by design: one dispatcher worker thread owns it, so a lock would only cost time.

    Args:
        capacity: Most tokens the bucket holds (the burst size), > 0.
        period: Seconds to refill from empty to full, > 0.
        clock: Monotonic time source in seconds.

    Raises:
        ValueError: ``capacity`` or ``period`` is not a positive finite number.
    """

    def __init__(self, capacity: float, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not (_positive(capacity) and _positive(period)):
            raise ValueError(f"capacity={capacity!r} and period={period!r} must both be positive and finite")
        self.capacity = float(capacity)
        self.period = float(period)
        self._rate = self.capacity / self.period
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def __repr__(self) -> str:
        return f"TokenBucket(capacity={self.capacity!r}, period={self.period!r}, tokens={self.tokens:.3f})"

    def _refill(self) -> None:
        now = self._clock()
        # A clock that steps back (a test, or a non-monotonic source) must not take tokens away.
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self._rate)
        self._updated = now

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there now.

        Returns:
            ``True`` if the tokens were taken, ``False`` (and nothing taken) otherwise.
        """
        self._refill()
        if self._tokens + _EPSILON < n:
            return False
        self._tokens = max(0.0, self._tokens - n)
        return True

    def next_available(self, n: float = 1.0) -> float:
        """Return the seconds from now until ``n`` tokens are there: 0 if now, ``inf`` if ``n > capacity``."""
        self._refill()
        missing = n - self._tokens
        if missing <= _EPSILON:
            return 0.0
        if n > self.capacity:
            return float("inf")
        return missing / self._rate


class Budget:
    """Several token buckets spent together: a page goes out only when every one of them has a token.

    SMN limits each number to 60 SMS an hour and 200 in 12 hours; one bucket per limit keeps both.
    Same interface as :class:`TokenBucket`; not thread-safe by design either.
    """

    def __init__(self, *buckets: TokenBucket) -> None:
        if not buckets:
            raise ValueError("a budget needs at least one bucket")
        self.buckets = buckets

    def __repr__(self) -> str:
        return f"Budget({', '.join(map(repr, self.buckets))})"

    @property
    def tokens(self) -> float:
        """Tokens there now: the fewest of any bucket."""
        return min(bucket.tokens for bucket in self.buckets)

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens from every bucket if all have them now; else take nothing."""
        if any(bucket.next_available(n) > 0 for bucket in self.buckets):
            return False
        return all([bucket.try_acquire(n) for bucket in self.buckets])

    def next_available(self, n: float = 1.0) -> float:
        """Return the seconds until every bucket has ``n`` tokens."""
        return max(bucket.next_available(n) for bucket in self.buckets)


class CircuitBreaker:
    """Stops sending after a failure no retry can fix (bad credentials, unknown sign), then probes.

    States: ``closed`` (send), ``open`` (do not send until the cooldown has passed), ``half-open`` (one trial
    request is let through; its success closes the circuit, its failure opens it again with the cooldown
    doubled, up to ``max_cooldown``). Failures that a retry can fix are :class:`RetryPolicy`'s business:
    :meth:`record_failure` on a closed circuit changes nothing. Not thread-safe (one worker thread owns it).

    Args:
        cooldown: Seconds the circuit stays open the first time, > 0.
        max_cooldown: Longest cooldown after repeated failed trials, >= ``cooldown``.
        clock: Monotonic time source in seconds.

    Raises:
        ValueError: A cooldown is not a positive finite number, or ``max_cooldown < cooldown``.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __init__(
        self, cooldown: float, max_cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (_positive(cooldown) and _positive(max_cooldown) and max_cooldown >= cooldown):
            raise ValueError(
                f"cooldown={cooldown!r} must be positive and finite, and max_cooldown={max_cooldown!r} >= it"
            )
        self.base_cooldown = float(cooldown)
        self.max_cooldown = float(max_cooldown)
        self._clock = clock
        self._cooldown = self.base_cooldown
        self._state = self.CLOSED
        self._opened_at = 0.0
        self._trial_at = 0.0
        self._last_reason: str | None = None

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state!r}, cooldown={self._cooldown!r}, reason={self._last_reason!r})"
        )

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (cooldown passed, or the trial is under way)."""
        if self._state == self.OPEN and self.reopens_in() == 0.0:
            return self.HALF_OPEN
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether normal sending is stopped (open or half-open)."""
        return self._state != self.CLOSED

    @property
    def cooldown(self) -> float:
        """The cooldown the circuit uses the next time it opens (or is using now)."""
        return self._cooldown

    @property
    def last_reason(self) -> str | None:
        """Why the circuit last opened; kept after it closes, for diagnostics."""
        return self._last_reason

    def reopens_in(self) -> float:
        """Return the seconds until a trial request is allowed; 0 when closed or the cooldown has passed."""
        if self._state != self.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def trial_ends_in(self) -> float:
        """Return the seconds until a trial that never reported back is given up (0 unless half-open)."""
        if self._state != self.HALF_OPEN:
            return 0.0
        return max(0.0, self._trial_at + self._cooldown - self._clock())

    def allow(self) -> bool:
        """Say whether a request may go now; after the cooldown, let exactly one trial through.

        A trial that never reports back (its sender crashed) is given up after another cooldown, and
        the next request becomes the trial: the circuit cannot stay half-open for ever.
        """
        if self._state == self.CLOSED:
            return True
        if (self._state == self.OPEN and self.reopens_in() == 0.0) or (
            self._state == self.HALF_OPEN and self.trial_ends_in() == 0.0
        ):
            self._state, self._trial_at = self.HALF_OPEN, self._clock()
            return True
        return False

    def record_success(self) -> None:
        """Close the circuit and reset the cooldown: the trial (or any request) went through."""
        self._state = self.CLOSED
        self._cooldown = self.base_cooldown

    def record_failure(self, reason: str | None = None) -> None:
        """Report that a request failed; a failed trial opens the circuit again with a doubled cooldown."""
        if self._state == self.HALF_OPEN:
            self._cooldown = min(self.max_cooldown, self._cooldown * 2)
            self._trip(reason)

    def open(self, reason: str) -> None:
        """Open the circuit after a failure that retrying cannot fix; during a trial, count it as failed.

        Args:
            reason: What went wrong, for the report (never a secret).
        """
        if self._state == self.HALF_OPEN:
            self.record_failure(reason)
        else:
            # Already open: the newest failure restarts the same cooldown.
            self._trip(reason)

    def hold_open(self, seconds: float, reason: str) -> None:
        """Stay open for ``seconds`` from now (another process's failure paused the fleet), then probe.

        The cooldown itself is unchanged: a failed trial after this doubles it as usual.
        """
        self._state, self._last_reason = self.OPEN, reason
        self._opened_at = self._clock() + max(0.0, seconds) - self._cooldown

    def _trip(self, reason: str | None) -> None:
        self._state = self.OPEN
        self._opened_at = self._clock()
        if reason is not None:
            self._last_reason = reason


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before retrying a failed send, by error class; an immutable value object.

    Change a setting with ``dataclasses.replace(policy, cap=30.0)``.

    Attributes:
        base: Ceiling of the first backoff, in seconds; each attempt doubles it.
        cap: Largest backoff ceiling, in seconds.
        max_age: Seconds an alert may wait for delivery before it is given up.
        throttle_default: ``(low, high)`` seconds to wait after a 429 that gave no ``Retry-After``.
        per_number_backoff: Seconds to wait after SMN.0057 (per-number hourly limit).
    """

    base: float = DEFAULT_BACKOFF_BASE
    cap: float = DEFAULT_BACKOFF_CAP
    max_age: float = DEFAULT_MAX_AGE
    throttle_default: tuple[float, float] = DEFAULT_THROTTLE_DELAY
    per_number_backoff: float = DEFAULT_PER_NUMBER_BACKOFF

    def __post_init__(self) -> None:
        low, high = self.throttle_default
        finite = all(
            map(math.isfinite, (self.base, self.cap, self.max_age, low, high, self.per_number_backoff))
        )
        if not (finite and self.base > 0 and self.cap >= self.base and self.max_age > 0):
            raise ValueError(f"need 0 < base <= cap and max_age > 0, all finite, got {self!r}")
        if not (0 <= low <= high and self.per_number_backoff >= 0):
            raise ValueError(
                f"need 0 <= throttle_default[0] <= [1] and per_number_backoff >= 0, got {self!r}"
            )

    def delay(self, attempt: int, error: RetryableError, rng: random.Random) -> float | None:
        """Return the seconds to wait before retry number ``attempt``, or ``None`` not to retry.

        Args:
            attempt: 0 for the first retry, 1 for the second, and so on.
            error: Why the last attempt failed.
            rng: Source of jitter (seed it in tests).

        Returns:
            ``None`` if the error is not retryable. Otherwise a full-jitter exponential backoff, or the
            throttling delays for 429 and SMN.0057, never less than the server's ``Retry-After``, and never
            more than ``max_age``.

        Raises:
            ValueError: ``attempt`` is negative.
        """
        if attempt < 0:
            raise ValueError(f"attempt={attempt!r} must be >= 0")
        if not error.retryable:
            return None
        if error.code == PER_NUMBER_LIMIT_CODE:
            wait = self.per_number_backoff
        elif _is_throttled(error):
            wait = rng.uniform(*self.throttle_default)
        else:
            wait = rng.uniform(0.0, min(self.cap, self.base * 2 ** min(attempt, _MAX_EXPONENT)))
        retry_after = error.retry_after
        # "> 0" also refuses NaN, which a garbled header might have turned into.
        if retry_after is not None and retry_after > 0:
            wait = max(wait, retry_after)
        return min(wait, self.max_age)

    def should_give_up(self, first_attempt_at: float, now: float, next_delay: float) -> bool:
        """Say whether waiting ``next_delay`` more seconds would take the alert past ``max_age``."""
        return now + next_delay > first_attempt_at + self.max_age

    def last_chance(self, first_attempt_at: float, now: float) -> float | None:
        """Return the seconds until the last try of an alert: ``LAST_TRY_MARGIN`` before it is too old.

        For when the wait asked for (a ``Retry-After`` beyond ``max_age``) would outlive the alert: one
        more try at the edge of its age beats giving it up at once. ``None`` once that moment has come
        (the last try was that one), so an alert gets at most one such try.
        """
        edge = first_attempt_at + self.max_age - LAST_TRY_MARGIN
        return edge - now if edge > now else None


def _positive(number: float) -> bool:
    """Tell whether ``number`` is a positive finite number (nan and infinities are not)."""
    return math.isfinite(number) and number > 0


def _is_throttled(error: RetryableError) -> bool:
    if error.code in TOO_MANY_REQUESTS_CODES:
        return True
    return getattr(error, "status", None) == _HTTP_TOO_MANY_REQUESTS
