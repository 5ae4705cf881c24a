"""The worker's side of sharing state with the processes that page the same people (``shared_state``).

A :class:`Sharing` stands between the pager and the :class:`~smn_alert._fleet.Fleet` (which talks to the
store). For the pager it is the ``_pager.Share``: does a new incident page here or fold (``first``), take
these counts for the fleet's digest (``hand``), a page was held back (``hold``). For the dispatcher it is one
:meth:`Sharing.step` per worker pass (push counts and claim due digests onto the pager, follow the fleet's
circuit, take counts back when the store fails, leave at close) and :meth:`Sharing.settled` after a send
(ack a claimed digest, pause or resume the fleet). :class:`SharedBudget` is the pager's budget: the fleet's
one, on the store's clock, or this process's own while the store is unavailable.

Worker thread only: the application thread never reaches this module (nor the store).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from re import Pattern
from typing import Any, Callable, Optional, Union

from smn_alert._alert import Alert, Fingerprint
from smn_alert._fleet import Fleet
from smn_alert._fleet_data import claim_groups, decode_sample, encode_sample, kind_id, stand_in
from smn_alert._pager import Pager
from smn_alert._ratelimit import Budget, TokenBucket
from smn_alert._senders import Delivery
from smn_alert._store import Claim
from smn_alert.errors import SMNAuthError

#: Seconds a claimed digest is this process's to send before another process may send it instead; renewed
#: while its send is retried or held back by the budget, so only a process that died loses it.
LEASE = 30.0
#: Kinds whose store id and redacted sample are remembered (each is worked out once per kind).
MAX_KNOWN_KINDS = 1024
#: Claims taken in one go at a flush or when the last process leaves (expired leases are re-offered first).
MAX_FINAL_CLAIMS = 4


class SharedBudget:
    """The pager's SMS budget: the fleet's (both buckets, on the store's clock), or this process's own.

    The fleet's budget is spent in the store, so it cannot be peeked at: :meth:`next_available` answers from
    the last refusal, and :meth:`try_acquire` may still be refused (another process spent it meanwhile).
    While the store is unavailable, the local budget decides, as for a lone process.
    """

    def __init__(self, fleet: Fleet, local: Union[Budget, TokenBucket], clock: Callable[[], float]) -> None:
        self._fleet, self._local, self._clock = fleet, local, clock
        self._refused_until = -math.inf  # when the fleet's budget said a token would be there again

    def try_acquire(self, n: float = 1.0) -> bool:
        """Spend one page: from the fleet's budget, or the local one while the store is unavailable."""
        waited = self._fleet.spend()
        if waited is None:
            return self._local.try_acquire(n)
        if waited > 0:
            self._refused_until = self._clock() + waited
            return False
        return True

    def next_available(self, n: float = 1.0) -> float:
        """Return the seconds until a page may be spent, as last heard (0: try)."""
        if self._fleet.degraded:
            return self._local.next_available(n)
        return max(0.0, self._refused_until - self._clock())


class Sharing:
    """One dispatcher's link to the processes paging the same target; see the module docstring.

    Args:
        fleet: The coordinator that talks to the store.
        redactions: The page's redactions: a kind's sample is stored already redacted.
    """

    def __init__(self, fleet: Fleet, redactions: Sequence[Pattern[str]]) -> None:
        self.fleet, self._redactions = fleet, redactions
        self._known: dict[Fingerprint, tuple[str, str]] = {}  # fingerprint -> (kind id, sample)
        self._local: dict[str, Alert] = {}  # kind id -> this process's first alert of the kind
        self._dropped: dict[str, int] = {}  # kind id -> handed alerts that had met a full buffer, not pushed
        self._degraded = False  # as of the last step: a change takes counts back
        self._left = False  # this process told the store it leaves (closing)
        self._last = False  # ... and no other process for the target lives: it sends what is pending
        self._renewed_at = -math.inf

    def __repr__(self) -> str:
        return f"Sharing({self.fleet!r})"

    # --- the pager's Share --------------------------------------------------------------------------------
    def first(self, level: int) -> str:
        """Return ``"page"``, ``"fold"`` or ``"local"`` for a new incident (or a worse level)."""
        return self.fleet.first(level).value

    def hand(self, alert: Alert, count: int, dropped: int, first_seen: float, last_seen: float) -> bool:
        """Give ``count`` alerts like ``alert`` to the fleet's digest; False while the store is down.

        ``dropped`` of them met a full buffer: remembered until pushed, so a take-back counts them right.
        """
        kind, sample = self._identify(alert)
        taken = self.fleet.hand(kind, alert.levelno, count, sample, first_seen, last_seen)
        if taken and dropped:
            self._dropped[kind] = self._dropped.get(kind, 0) + dropped
        return taken

    def hold(self) -> None:
        """Note in the store that the budget held a page back (the next digest says since when)."""
        self.fleet.hold()

    def _identify(self, alert: Alert) -> tuple[str, str]:
        """Return the kind's store id and redacted sample, worked out once per kind."""
        known = self._known.get(alert.fingerprint)
        if known is None:
            if len(self._known) >= MAX_KNOWN_KINDS:
                self._known.clear()
                self._local.clear()
            known = self._known[alert.fingerprint] = (
                kind_id(alert.fingerprint),
                encode_sample(alert, self._redactions),
            )
            self._local[known[0]] = alert
        return known

    def _alert_of(self, kind: str, sample: str, level: int, created: float) -> Alert:
        """Return the alert a kind of the fleet's shows here: this process's own, else its stored sample."""
        return self._local.get(kind) or decode_sample(sample) or stand_in(level, created)

    # --- the dispatcher's ---------------------------------------------------------------------------------
    @property
    def unsent(self) -> int:
        """Alerts handed and not yet in the store (a flush or close waits for them)."""
        return self.fleet.unsent

    def step(self, pager: Pager, now: float, *, closing: bool, flushing: bool) -> None:
        """One worker pass: push counts, put due digests on ``pager``, follow the fleet's circuit.

        Flushing pushes this process's counts at once (the fleet's digest still goes when its window ends:
        gunicorn flushes each recycled worker, and that must not page). Closing, once this process's own
        alerts are handed or paged, it leaves; the last live process takes what is pending at once.
        """
        if closing and not self._left and not pager.pending:
            self.leave(pager, now)
        elif self._left:  # counts read late (a fold counter's grace) still reach the store
            pushed = _listed(self.fleet.sync(force=True)) if self.fleet.unsent else []
            self._take(pager, now, self._final() if self._last else pushed)
        else:
            self._take(pager, now, _listed(self.fleet.sync(force=flushing)))
        if pager.may_page(now):  # before a page goes: is the fleet paused?
            self._follow_circuit(pager)
        self._renew(pager, now)
        self._notice_outage(pager, now)
        if not self.fleet.unsent:
            self._dropped.clear()  # pushed: the store has them

    @property
    def left(self) -> bool:
        """Tell whether this process has told the others that it leaves (closing)."""
        return self._left

    def leave(self, pager: Pager, now: float, *, claim: bool = True) -> bool:
        """Push the counts and leave; True when ``pager`` has something to send now.

        The last live process claims what is pending (unless ``claim`` is False: no time is left to send it,
        so it stays in the store for the next process of the target).
        """
        self._left = True
        self._last = self.fleet.leave() == 0 and claim
        self._notice_outage(pager, now)  # a store that failed now: its counts are taken back, paged here
        if not claim:
            return bool(pager.pending)
        # Not the last: still send what is due now (a window that ended, a dead claimer's expired lease).
        claims = self._final() if self._last else _listed(self.fleet.sync(force=True))
        return self._take(pager, now, claims) or bool(pager.pending)

    def _take(self, pager: Pager, now: float, claims: list[Claim]) -> bool:
        """Put claimed digests on ``pager``; True if there were any."""
        for claim in claims:
            groups = [  # a kind this process saw shows as its own alert: one group, not two
                replace(group, alert=self._local[kind.kind]) if kind.kind in self._local else group
                for kind, group in zip(claim.kinds, claim_groups(claim))
            ]
            pager.add_claim(claim, groups, now, processes=claim.processes, hosts=claim.hosts,
                            held_since=claim.held_since)  # fmt: skip
        return bool(claims)

    def _final(self) -> list[Claim]:
        """Claim what is pending now (an expired lease is re-offered first, so ask a few times)."""
        claims: list[Claim] = []
        for _ in range(MAX_FINAL_CLAIMS):
            claim = self.fleet.final_claim()
            if claim is None:
                break
            claims.append(claim)
        return claims

    def _follow_circuit(self, pager: Pager) -> None:
        """Pause this process's sending while another paused the fleet (a wrong key, no permission)."""
        paused = self.fleet.paused()
        if paused is not None and not pager.breaker.is_open:
            pager.pause(*paused)

    def _renew(self, pager: Pager, now: float) -> None:
        """Renew the leases of claimed digests waiting here (retried, held back), every third of a lease."""
        if pager.claims and now - self._renewed_at >= LEASE / 3:
            self._renewed_at = now
            for claim in pager.claims:
                self.fleet.renew(claim)  # type: ignore[arg-type]

    def _notice_outage(self, pager: Pager, now: float) -> None:
        """When the store just failed, take back the counts it never got: this process pages them itself."""
        degraded = self.fleet.degraded
        if degraded and not self._degraded:
            for delta in self.fleet.take_back():
                alert = self._alert_of(delta.kind, delta.sample, delta.level, delta.first_seen)
                dropped = min(delta.count, self._dropped.pop(delta.kind, 0))
                pager.take_back(alert, delta.count, dropped, delta.first_seen, delta.last_seen, now)
            self._dropped.clear()
        self._degraded = degraded

    def release(self, pager: Pager) -> None:
        """Give back the claimed digests that could not go out before closing (for the next process)."""
        for claim in pager.release_claims():
            self.fleet.release(claim)  # type: ignore[arg-type]

    def settled(self, pager: Pager, claims: Sequence[object], outcome: object, recovered: bool) -> None:
        """After a send: ack its claimed digests; pause the fleet after a refused key, resume it after.

        Only an authentication or permission failure pauses every process (the key is the fleet's); one
        host's network trouble or a refused text pauses only this one.
        """
        if isinstance(outcome, Delivery) and outcome.ok:
            for claim in claims:
                self.fleet.ack(claim)  # type: ignore[arg-type]
            if recovered:
                self.fleet.resume()
        elif isinstance(outcome, SMNAuthError) and pager.breaker.reopens_in() > 0:
            self.fleet.pause(pager.breaker.reopens_in(), pager.breaker.last_reason or "paging failed")

    def status(self) -> dict[str, Any]:
        """Return the fleet's view of the target and this process's side of it."""
        return self.fleet.status()


def _listed(claim: Optional[Claim]) -> list[Claim]:
    return [] if claim is None else [claim]
