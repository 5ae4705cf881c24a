"""What the worker decides, as a pure state machine: fold alerts, open windows, spend the budget, retry.

No threads and no I/O here: every method takes ``now`` (monotonic seconds) and the wall clock is injected,
so folding, budget, circuit and retry timing are tested without sleeping. The dispatcher feeds alerts in,
asks :meth:`Pager.take_due` for the page to send, sends it, and reports back with :meth:`Pager.settle`.

Every alert it takes in ends in exactly one counter of the :class:`~smn_alert._ledger.Ledger` it writes to.
What the worker should say about it (a retry, a refusal, dropped alerts) the pager words too, as a
:data:`Note`; the dispatcher only logs it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import re
import time
from collections.abc import Iterable
from typing import Callable, Optional, Protocol, Union

from smn_alert._alert import OTHER_KINDS, Alert, Fingerprint, kind_key, other_kinds_key
from smn_alert._compose import GroupSummary, PageContext, compose
from smn_alert._ledger import Ledger
from smn_alert._overflow import Dropped
from smn_alert._ratelimit import CircuitBreaker, RetryPolicy
from smn_alert._senders import Delivery
from smn_alert._smn import mask_number
from smn_alert._text import redact
from smn_alert._values import MAX_DURATION
from smn_alert.errors import SMNConfigError, SMNError

#: Seconds after a page during which further alerts are folded into one digest.
DEFAULT_WINDOW = 300.0
#: Distinct kinds one digest shows on its own; more are counted together as "other kinds" of their level
#: band, so memory stays bounded. (The hand-over buffer keeps its own, smaller limit while it is full:
#: ``_overflow.MAX_DROPPED_KINDS``, for the application thread's memory during a flood.)
DEFAULT_MAX_KINDS_PER_PAGE = 200
#: Longest :meth:`Pager.next_wakeup` lies ahead, in seconds: whatever a budget, circuit or window says, the
#: worker looks again within an hour, and never asks a thread to wait longer than it can.
MAX_SLEEP = 3600.0
#: A level no alert is above: :meth:`Pager.wake_level` while nothing can go out.
NEVER = 1 << 62

# A phone number in free text: seven digits or more, single spaces or hyphens between them allowed, not
# part of a longer word (the digits inside a hex request id stay as they are).
_NUMBER_IN_TEXT = re.compile(r"(?:\+|(?<![0-9A-Za-z]))[0-9](?:[ \-]?[0-9]){6,}(?![0-9A-Za-z])")


class Group:
    """Alerts of one fingerprint waiting for the next page: the first one's text, and how many."""

    __slots__ = ("alert", "count", "dropped", "first_mono", "first_seen", "last_seen", "shared")

    def __init__(self, alert: Alert, now: float) -> None:
        self.alert = alert
        self.count = 0  # every alert of this kind shown on the page ...
        self.dropped = 0  # ... of which these met a full buffer (already counted as dropped) ...
        self.shared = 0  # ... and these were counted by the processes sharing state (a claimed digest)
        self.first_seen = self.last_seen = alert.created
        self.first_mono = now

    @property
    def waiting(self) -> int:
        """Count the alerts of this process the page resolves when settled (not dropped, not shared)."""
        return self.count - self.dropped - self.shared

    def add(self, alert: Alert, count: int = 1) -> None:
        """Count ``count`` more alerts of this kind."""
        self.count += count
        self.last_seen = max(self.last_seen, alert.created)

    def merge(self, other: Group) -> None:
        """Fold ``other`` (an older attempt of the same kind) into this group."""
        if other.first_seen <= self.first_seen:
            self.alert = other.alert
        self.count += other.count
        self.dropped += other.dropped
        self.shared += other.shared
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.first_mono = min(self.first_mono, other.first_mono)

    def summary(self) -> GroupSummary:
        """Return the view the text composer needs."""
        return GroupSummary(self.alert, self.count, self.first_seen, self.last_seen)


@dataclasses.dataclass
class Page:
    """One SMS about to be sent, with what it accounts for."""

    text: str
    groups: list[Group]
    alerts: int
    held: bool
    dropped: int
    failed_before: int
    trouble: Optional[str] = None  # why the text is a plain fallback (composing failed), for the log
    claims: list[object] = dataclasses.field(default_factory=list)  # shared digests it sends: ack when sent


Outcome = Union[Delivery, SMNError]
#: What the pager asks the dispatcher to log: ``(kind, text)``; kind is "retry", "refused", "recovered",
#: "overflow" or "undelivered" (an alert was given up: always said, never rate-limited away).
Note = tuple[str, str]


class Spend(Protocol):
    """The SMS budget as the pager spends it: a ``_ratelimit.Budget`` or the fleet's ``SharedBudget``."""

    def try_acquire(self, n: float = 1.0) -> bool: ...

    def next_available(self, n: float = 1.0) -> float: ...


class Share(Protocol):
    """What the pager asks of the processes it shares state with (``_sharing.Sharing``), on the worker.

    ``first`` answers ``"page"`` (this process pages: the fleet's window is opened), ``"fold"`` (another
    process already paged: :meth:`hand` the alerts) or ``"local"`` (the shared state is unavailable: page
    as a lone process would). ``hand`` returns False, taking nothing, when the alerts must stay here.
    """

    def first(self, level: int) -> str: ...

    def hand(self, alert: Alert, count: int, dropped: int, first_seen: float, last_seen: float) -> bool: ...

    def hold(self) -> None: ...


class Pager:
    """Decides when to page and with what text.

    Args:
        context: Prefix, length limit and redactions for every page (counts are filled in per page).
        bucket: The SMS budget; one token per page.
        breaker: Opens on errors a retry cannot fix (credentials, permission, content).
        retry: Backoff and give-up rules for errors a retry can fix.
        window: Seconds during which alerts after a page are folded into the next digest.
        max_groups: Distinct kinds kept per digest.
        segments: Counts the billed segments of a text for one recipient (number or topic).
        rng: Randomness for backoff jitter.
        wall: Wall clock that dates "held back since HH:MM".
        ledger: Where the counters go (a fresh one by default).
        share: The processes paging the same people (``shared_state``), or None: this process alone.
    """

    def __init__(
        self,
        context: PageContext,
        bucket: Spend,
        breaker: CircuitBreaker,
        retry: RetryPolicy,
        *,
        window: float = DEFAULT_WINDOW,
        max_groups: int = DEFAULT_MAX_KINDS_PER_PAGE,
        segments: Callable[[str, str], int] = lambda text, _: len(text),
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        ledger: Optional[Ledger] = None,
        share: Optional[Share] = None,
    ) -> None:
        _check_limits(window, max_groups)
        self.context, self.bucket, self.breaker, self.retry = context, bucket, breaker, retry
        self.window, self.max_groups, self._segments = window, max_groups, segments
        self._rng = rng or random.Random()
        self._wall = wall
        self.ledger = Ledger() if ledger is None else ledger
        self.share = share
        self._paging = False  # the fleet said this process pages what waits: keep it until it is sent
        self._claims: list[object] = []  # shared digests claimed for the next page ...
        self._fleet: tuple[int, int, Optional[float]] = (1, 1, None)  # ... their processes, hosts, held since
        self._groups: dict[Fingerprint, Group] = {}
        self._window_end: Optional[float] = None
        self._window_level = 0
        self._not_before = 0.0
        self._attempt = 0
        self._paid = False
        self._held_since: Optional[float] = None
        self._dropped_unreported = 0
        self._failed_unreported = 0
        self._in_flight = 0
        self._in_flight_shared = 0
        self._outage: Optional[str] = None  # what opened the circuit, said once per outage
        # Kinds seen while the window is open, at or below its level: their repeats change nothing but a
        # count, so the application thread may count them (see _fold); fingerprint -> first alert.
        self._window_kinds: dict[Fingerprint, Alert] = {}

    # --- intake -------------------------------------------------------------------------------------
    def add(self, alert: Alert, now: float) -> None:
        """Fold one alert into the pending digest."""
        self.ledger.received += 1
        self._group_for(alert, now).add(alert)
        if self._folding(now) and alert.levelno <= self._window_level:
            self._note_kind(alert)

    def add_counted(self, sample: Alert, count: int, now: float, *, seen: Optional[float] = None) -> None:
        """Fold ``count`` alerts of ``sample``'s kind counted on the application thread (no snapshot each).

        ``seen`` is the latest one's own wall time, when the calling thread knew it (a log record's
        ``created``); otherwise they are dated when the worker read them, by the pager's wall clock.
        """
        self.ledger.received += count
        latest = sample._replace(created=max(sample.created, self._wall() if seen is None else seen))
        self._group_for(latest, now).add(latest, count)

    def add_dropped(self, sample: Alert, count: int, now: float, *, other: bool = False) -> None:
        """Count ``count`` alerts of ``sample``'s kind that met a full buffer (text dropped, kind kept).

        ``sample`` is the first of them; with ``other``, even the buffer's list of kinds was full and
        they count among "other kinds" of their level's band. The next page shows them in their kind's count
        and says how many of them were dropped.
        """
        self.ledger.received += count
        self.ledger.dropped += count
        self._dropped_unreported += count
        group = self._other_group(sample, now) if other else self._group_for(sample, now)
        group.add(sample, count)
        group.dropped += count

    def add_overflow(self, count: int, kinds: Iterable[Dropped], capacity: int, now: float) -> Optional[Note]:
        """Count what a full buffer of ``capacity`` dropped (see :meth:`add_dropped`); say it, if any.

        Repeats of a kind whose first alert was in the buffer (``kept``) lost no text: they are only counted
        (:meth:`add_counted`), as a repeat counted on the application thread is.
        """
        for sample, dropped, other, kept in kinds:
            if kept:
                count -= dropped
                self.add_counted(sample, dropped, now, seen=sample.created)
            else:
                self.add_dropped(sample, dropped, now, other=other)
        return ("overflow", f"{count} alerts dropped: the buffer of {capacity} was full") if count else None

    def _group_for(self, alert: Alert, now: float) -> Group:
        """Return the group of ``alert``'s kind, made if new; past ``max_groups`` kinds, "other kinds"."""
        key, other = kind_key(alert, self._groups, self.max_groups)
        if other:
            return self._other_group(alert, now)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(alert, now)
        return group

    def _other_group(self, like: Alert, now: float) -> Group:
        """Return the group counting kinds beyond ``max_groups`` in ``like``'s band (its stand-in's kind)."""
        key = other_kinds_key(like.levelno)
        group = self._groups.get(key)
        if group is None:
            band = key[1]  # the stand-in's fingerprint is the key, so a retry puts it back in its place
            stand_in = Alert(band, logging.getLevelName(band), "", OTHER_KINDS, "alerts of other kinds",
                             created=like.created)  # fmt: skip
            group = self._groups[key] = Group(stand_in, now)
        return group

    # --- shared state (``shared_state``): the processes paging the same people -----------------------
    def add_claim(
        self, claim: object, groups: Iterable[GroupSummary], now: float, *, processes: int, hosts: int,
        held_since: Optional[float],
    ) -> None:  # fmt: skip
        """Take a digest this process claimed for the fleet: its kinds go on the next page, due at once.

        Its alerts are counted as ``shared`` (they are the fleet's, not in this process's ledger); the page
        that carries them lists ``claim`` so the dispatcher acks it once the SMS went out.
        """
        for summary in groups:
            alert = summary.alert
            group = self._groups.get(alert.fingerprint)
            if group is None:
                group = self._groups[alert.fingerprint] = Group(alert, now)
            group.add(alert, summary.count)
            group.shared += summary.count
            group.first_seen = min(group.first_seen, summary.first_seen)
            group.last_seen = max(group.last_seen, summary.last_seen)
        self._claims.append(claim)
        known, many, held = self._fleet
        self._fleet = (max(known, processes), max(many, hosts), _earliest(held, held_since))

    def take_back(
        self, alert: Alert, count: int, dropped: int, first_seen: float, last_seen: float, now: float
    ) -> None:
        """Take back ``count`` alerts handed to the shared state that it never got (it failed meanwhile).

        ``dropped`` of them had met a full buffer: counted as dropped already, not as handed.
        """
        self.ledger.handed -= count - dropped
        self._dropped_unreported += dropped
        group = self._group_for(alert, now)
        group.add(alert, count)
        group.dropped += dropped
        group.first_seen, group.last_seen = min(group.first_seen, first_seen), max(group.last_seen, last_seen)

    def pause(self, seconds: float, reason: str) -> None:
        """Stop sending for ``seconds``: another process sharing state met a failure no retry can fix."""
        self.breaker.hold_open(seconds, reason)
        self._outage = self._outage or "shared"

    def release_claims(self) -> list[object]:
        """Take the claimed digests off the next page (they go back to the store unsent); return them."""
        claims, self._claims, self._fleet = self._claims, [], (1, 1, None)
        for key, group in list(self._groups.items()):
            group.count, group.shared = group.count - group.shared, 0
            if group.count <= group.dropped and group.waiting <= 0:
                del self._groups[key]
        return claims

    @property
    def claims(self) -> list[object]:
        """Claimed digests waiting here to be sent (their leases are renewed meanwhile)."""
        return list(self._claims)

    @property
    def claimed(self) -> int:
        """The fleet's alerts on claimed digests not sent yet (waiting or in flight); not in the ledger."""
        return sum(group.shared for group in self._groups.values()) + self._in_flight_shared

    def may_page(self, now: float) -> bool:
        """Tell whether a page may be due: a claimed digest, or alerts that would not just be handed."""
        if self._claims or self._paid:
            return True
        return bool(self._groups) and not (self._folding(now) and self._top_level() <= self._window_level)

    def _hand_or_page(self, now: float) -> None:
        """Shared state: hand this process's waiting alerts to the fleet's digest, unless they page here.

        Inside the window (as this process last saw the fleet's) they are handed at every step, and pushed
        within a second. Otherwise (a first page, an escalation, the window's end) the fleet decides:
        ``"fold"`` hands them (another process paged) and opens the local view of the window; ``"page"``
        and ``"local"`` leave them here to page now, as a lone process would.
        """
        share = self.share
        if share is None or self._paid or self._paging or self._claims or not self._groups:
            return
        level = self._top_level()
        if self._folding(now) and level <= self._window_level:
            self._hand_all(share)
        elif share.first(level) == "fold":
            groups = list(self._groups.values())
            if self._hand_all(share):
                self._open_window(now, groups)
        else:  # "page" or "local": this process pages them, even if the budget or the circuit holds them
            self._paging = True

    def _hand_all(self, share: Share) -> bool:
        """Hand every waiting group to ``share``; False (the rest kept here) when it stops taking them."""
        for key, group in list(self._groups.items()):
            if not share.hand(group.alert, group.count, group.dropped, group.first_seen, group.last_seen):
                return False
            del self._groups[key]
            self.ledger.handed += group.waiting  # the dropped ones stay counted as dropped
            # The fleet's digest counts the dropped ones: no page of this process's own says so again.
            self._dropped_unreported = max(0, self._dropped_unreported - group.dropped)
        return True

    def hand_waiting(self) -> None:
        """Give this process's own waiting alerts to the fleet's digest: closing, they cannot go now."""
        if self.share is not None and not self._claims and self._hand_all(self.share) and not self._groups:
            self._attempt, self._paid, self._paging = 0, False, False

    def _hold(self) -> None:
        """Note that the budget holds a page back (once per spell: the fleet notes it too)."""
        if self._held_since is None:
            self._held_since = self._wall()
            if self.share is not None:
                self.share.hold()

    # --- what the application thread may do on its own ----------------------------------------------
    def _folding(self, now: float) -> bool:
        return self._window_end is not None and now < self._window_end

    def _note_kind(self, alert: Alert) -> None:
        if len(self._window_kinds) < self.max_groups and alert.template is not OTHER_KINDS:
            self._window_kinds.setdefault(alert.fingerprint, alert)

    def fold_kinds(self, now: float) -> dict[Fingerprint, Alert]:
        """Kinds whose repeats may only be counted now (fingerprint -> first alert): none outside a window.

        Within an open window, a kind at or below the level paged changes nothing but its count until the
        window ends; anything worse is not among these, so it is snapshotted and pages at once.
        """
        return self._window_kinds if self._folding(now) else {}

    def wake_level(self, now: float) -> int:
        """Return the level an alert must be above for waking the worker to matter (it could page now).

        ``-1`` outside a window (any alert may be a first page); the window's level inside one; above any
        level while the budget is spent or the circuit is open (nothing can go out: the worker looks on
        its own, a few times a second).
        """
        if self.breaker.is_open or (not self._paid and not self._token_ready()):
            return NEVER
        return self._window_level if self._folding(now) else -1

    # --- what is waiting ----------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Alerts taken in but not yet resolved (waiting, or in the SMS being sent)."""
        return sum(group.waiting for group in self._groups.values()) + self._in_flight

    def _has_news(self) -> bool:
        return bool(self._groups) or self._dropped_unreported > 0

    def _due_at(self, now: float) -> float:
        """When the waiting alerts are due by the folding rules alone (ignoring budget and circuit)."""
        if self._paid:
            return self._not_before  # a retry that already spent its token
        if self._claims:
            return now  # a claimed digest: the fleet's window has ended
        if self._window_end is None or self._top_level() > self._window_level:
            return now  # first page of a quiet spell, or something worse than what was paged
        return self._window_end

    def _top_level(self) -> int:
        return max((group.alert.levelno for group in self._groups.values()), default=0)

    def blocked_until(self, now: float, *, final: bool = False) -> Optional[float]:
        """When budget, circuit or backoff next allow a page (``now`` if they do now; None if idle).

        With ``final`` (the last page at shutdown, which may overspend the budget) the budget is ignored.
        """
        if not self._has_news():
            return None
        times = [now, self._not_before if self._paid else now]
        if not self._paid and not final and not self._token_ready():
            times.append(now + self.bucket.next_available())
        if self.breaker.is_open:
            times.append(now + max(self.breaker.reopens_in(), self.breaker.trial_ends_in()))
        return max(times)

    def next_wakeup(self, now: float) -> Optional[float]:
        """Return the next moment ``take_due`` may have something to do, or None when there is nothing.

        Never more than :data:`MAX_SLEEP` ahead, so a thread can always wait for it (``Event.wait``
        overflows past ``threading.TIMEOUT_MAX``; an empty budget may say "never").
        """
        if not self._has_news():
            return None if self._window_end is None else _soon(self._window_end, now)
        due = self._due_at(now)
        if not self._paid and not self._token_ready() and self._held_since is None:
            return _soon(due, now)  # the budget blocks: look when due anyway, so take_due notes the hold
        wake = max(due, self.blocked_until(now) or now)
        if self.breaker.is_open and self._groups:
            oldest = min(group.first_mono for group in self._groups.values())
            wake = min(wake, oldest + self.retry.max_age)
        return _soon(wake, now)

    def expedite(self) -> None:
        """Drop a pending backoff so the next ``take_due`` may send at once (the last try at shutdown)."""
        self._not_before = 0.0

    # --- decisions ----------------------------------------------------------------------------------
    def take_due(self, now: float, *, force: bool = False, override_budget: bool = False) -> Optional[Page]:
        """Return the page to send now, or None.

        Args:
            now: Monotonic time.
            force: Send what is waiting without waiting for the folding window (flush, close).
            override_budget: Allow one page even when the budget is spent (the last page at shutdown).
        """
        if self.breaker.is_open:
            self._expire(now)  # behind an open circuit, alerts wait at most max_age, due or not
        self._hand_or_page(now)
        if not self._has_news():
            if self._window_end is not None and now >= self._window_end:
                self._window_end = None  # a whole window without alerts: the spell is quiet again
                self._window_kinds = {}
            return None
        due = self._not_before if self._paid else (now if force else self._due_at(now))
        if due > now:  # a flush skips the folding window, never a retry's backoff
            return None
        if not self._paid and not self._token_ready() and not override_budget:
            self._hold()
            return None
        if not self.breaker.allow():
            return None
        if not self._paid and not self.bucket.try_acquire():
            if not override_budget:  # a shared budget another process spent since this one last looked
                self._hold()
                return None
            self.ledger.last_error = "SMS budget spent; the last page at shutdown goes out anyway"
        return self._build(now)

    def _token_ready(self) -> bool:
        """Tell whether the budget has a token now (by the bucket's own rounding, so the two agree)."""
        return self.bucket.next_available() == 0

    def _build(self, now: float) -> Page:
        groups = list(self._groups.values())
        processes, hosts, fleet_held = self._fleet
        held_since = _earliest(self._held_since, fleet_held)
        alerts = sum(g.waiting for g in groups)
        context = dataclasses.replace(
            self.context,
            held_back=sum(g.count - g.dropped for g in groups) if held_since is not None else 0,
            held_since=held_since,
            dropped=self._dropped_unreported,
            failed_before=self._failed_unreported,
            processes=processes,
            hosts=hosts,
        )
        text, trouble = _compose_safely(groups, context, alerts)
        self._groups = {}  # only now: a failure above leaves every alert where it was
        page = Page(text, groups, alerts, held_since is not None, context.dropped, context.failed_before,
                    trouble, self._claims)  # fmt: skip
        self._dropped_unreported = self._failed_unreported = 0
        self._claims, self._paging = [], False
        self._in_flight, self._in_flight_shared = page.alerts, sum(g.shared for g in groups)
        self._open_window(now, groups)
        return page

    def _open_window(self, now: float, groups: Iterable[Group]) -> None:
        groups = list(groups)
        level = max((g.alert.levelno for g in groups), default=0)
        if self._window_end is None:
            self._window_kinds = {}
        self._window_level = max(level, self._window_level) if self._window_end is not None else level
        self._window_end = now + self.window
        for group in groups:
            self._note_kind(group.alert)

    # --- results ------------------------------------------------------------------------------------
    def settle(self, page: Page, outcome: Outcome, now: float) -> Optional[Note]:
        """Account for what happened to ``page``; returns a diagnostic to log, or None."""
        self._in_flight = self._in_flight_shared = 0
        if isinstance(outcome, Delivery) and outcome.ok:
            return self._delivered(page, outcome)
        if isinstance(outcome, Delivery):
            codes = sorted({str(r.code) for r in outcome.refused})
            reason = self._scrub(f"every number was refused ({', '.join(codes)})")
            return self._give_up(page, reason, open_circuit=True, cause=",".join(codes))
        if outcome.retryable:
            return self._retry_later(page, outcome, now)
        cause = outcome.code or type(outcome).__name__
        return self._give_up(page, self._describe(outcome), open_circuit=True, cause=cause)

    def _describe(self, error: SMNError) -> str:
        """Say what went wrong as diagnostics and ``stats()`` may show it (see :meth:`_scrub`)."""
        try:
            said = f"{type(error).__name__}: {error}"
        except Exception:  # a sender's odd error must not stop the accounting
            said = type(error).__name__
        return self._scrub(said)

    def _scrub(self, text: str) -> str:
        """Treat SMN's and the network's error text like log text: secrets redacted, numbers masked.

        An error may quote the request (a proxy's echo, a gateway's message), with a password or a
        whole phone number in it; what the log and ``stats()["last_error"]`` show must not.
        """
        masked = redact(text, self.context.redactions)
        return _NUMBER_IN_TEXT.sub(lambda match: mask_number(match.group(0)), masked)

    def _delivered(self, page: Page, delivery: Delivery) -> Optional[Note]:
        counters = self.ledger
        kinds = sum(1 for group in page.groups if group.waiting > 0)
        counters.sent += kinds
        if page.held:
            counters.suppressed += page.alerts - kinds
        else:
            counters.folded += page.alerts - kinds
        counters.pages += 1
        counters.segments += sum(self._segments(page.text, endpoint) for endpoint in delivery.delivered)
        for endpoint in delivery.delivered:
            masked = endpoint if endpoint.startswith("urn:") else mask_number(endpoint)
            counters.delivered[masked] = counters.delivered.get(masked, 0) + 1
        counters.refused += len(delivery.refused)
        self.breaker.record_success()
        self._held_since, self._fleet = None, (1, 1, None)
        self._attempt, self._paid = 0, False
        if self._outage is not None:
            self._outage = None
            return "recovered", "paging works again"
        if delivery.refused:
            refused = ", ".join(f"{mask_number(r.endpoint)} ({r.code})" for r in delivery.refused)
            return "refused", self._scrub(f"numbers refused: {refused}")
        return None

    def _retry_later(self, page: Page, error: SMNError, now: float) -> Optional[Note]:
        said = self._describe(error)
        self.breaker.record_failure(said)  # a failed trial after an open circuit reopens it
        delay = self.retry.delay(self._attempt, error, self._rng)  # attempt 0: the first retry
        self._attempt += 1
        oldest = min((g.first_mono for g in page.groups), default=now)
        last = delay is not None and self.retry.should_give_up(oldest, now, delay)
        if last:  # the wait asked for (a long Retry-After) outlives the alerts: try once more at the edge
            delay = self.retry.last_chance(oldest, now)
        if delay is None:
            return self._give_up(page, said + " (gave up retrying)", open_circuit=False)
        self._requeue(page)
        self.ledger.retried += 1
        self.ledger.last_error = said
        self._not_before, self._paid = now + delay, True
        edge = " (the last try before the alerts are too old)" if last else ""
        return "retry", f"{said}; retry {self._attempt} in {delay:.1f} s{edge}"

    def _requeue(self, page: Page) -> None:
        """Put a failed page's groups back, merged with whatever arrived meanwhile."""
        for group in page.groups:
            key = group.alert.fingerprint  # a stand-in's fingerprint is its "other kinds" key
            current = self._groups.get(key)
            if current is None:
                self._groups[key] = group
            else:
                current.merge(group)
        self._dropped_unreported += page.dropped
        self._failed_unreported += page.failed_before
        self._claims.extend(page.claims)

    def _give_up(self, page: Page, reason: str, *, open_circuit: bool, cause: str = "") -> Optional[Note]:
        self.ledger.failed += page.alerts
        self.ledger.last_error = reason
        self._failed_unreported += page.alerts + page.failed_before
        self._dropped_unreported += page.dropped
        self._attempt, self._paid = 0, False
        self._fleet = (1, 1, None)  # its claims lapse unacknowledged: another process may try them again
        lost = page.alerts + sum(group.shared for group in page.groups)
        alerts = f"{lost:,} alert{'' if lost == 1 else 's'}"
        note: Note = ("undelivered", f"{alerts} not delivered: {reason}")
        if open_circuit:
            self.breaker.open(reason)
            if self._outage == cause:
                return None  # the same failure as when the circuit opened: counted, already said
            self._outage = cause
            note = ("undelivered", note[1] + f"; paging paused for {self.breaker.cooldown:.0f} s")
        return note

    def _expire(self, now: float) -> None:
        """Give up alerts that waited longer than ``max_age`` behind an open circuit."""
        for key, group in list(self._groups.items()):
            if now - group.first_mono >= self.retry.max_age:  # >=: next_wakeup wakes exactly then
                del self._groups[key]
                self.ledger.failed += group.waiting
                self._failed_unreported += group.waiting + group.shared  # a claim's alerts are said too
        if not self._groups:  # what a pending retry was for is gone: the next page starts afresh
            self._attempt, self._paid, self._not_before = 0, False, 0.0
            self._claims, self._fleet, self._paging = [], (1, 1, None), False


def _compose_safely(groups: list[Group], context: PageContext, alerts: int) -> tuple[str, Optional[str]]:
    """Compose the page; if composing fails (a bug), a plain page and why, rather than lose the alerts."""
    try:
        return compose([group.summary() for group in groups], context), None
    except Exception as error:
        plain = f"smn_alert: {alerts} alerts; their text could not be written (see the smn_alert log)"
        return plain, f"composing a page failed ({type(error).__name__}): a plain page goes out instead"


def _earliest(first: Optional[float], second: Optional[float]) -> Optional[float]:
    """Return the earlier of two optional times (None when neither is set)."""
    return second if first is None else first if second is None else min(first, second)


def _soon(moment: float, now: float) -> float:
    """Return ``moment``, or ``now + MAX_SLEEP`` if it is later (or not a number at all)."""
    latest = now + MAX_SLEEP
    return moment if moment <= latest else latest


def _check_limits(window: float, max_groups: int) -> None:
    """Refuse a window or kinds limit no thread can wait for or no memory can hold, at construction."""
    if not (isinstance(window, (int, float)) and math.isfinite(window) and 0 < window <= MAX_DURATION):
        raise SMNConfigError(
            f"window={window!r}: must be more than 0 and at most {MAX_DURATION:,.0f} seconds"
        )
    if not (isinstance(max_groups, int) and max_groups >= 1):
        raise SMNConfigError(f"max_groups={max_groups!r}: must be a whole number >= 1")
