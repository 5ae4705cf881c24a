"""The fleet coordinator: one dispatcher's side of what it shares with every process paging the same people.

A :class:`Fleet` lives on one dispatcher's worker thread (never the application thread) and turns the store's
atomic operations (``_store``) into the few questions the worker asks: does this new kind page now or fold
(:meth:`Fleet.first`), here are folded counts (:meth:`Fleet.hand`), is there a digest for me to send
(:meth:`Fleet.sync`), may I spend a page (:meth:`Fleet.spend`), is the fleet paused (:meth:`Fleet.paused`).

Round trips are kept to at most two a second per process in steady state: counts are batched locally and
pushed once per ``sync_interval`` together with the heartbeat, repeats within the fleet's window fold on a
local estimate of it, and claims are asked for only while this process saw activity (or on a heartbeat).

The store failing never stops a page: any :class:`~smn_alert._store.StoreUnavailable` turns the fleet
"degraded": it says so once, hands the unsent counts back (:meth:`Fleet.take_back`), answers
:attr:`Decision.LOCAL` and re-probes with backoff (1 s doubling to 60 s); on recovery it says so once and
takes the caller's local counts with :meth:`Fleet.merge` (added, never observed: no first page is replayed).
"""

from __future__ import annotations

import enum
import math
import os
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Optional, TypeVar, Union

from smn_alert._store import (
    MAX_SAMPLE_CHARS,
    Bucket,
    Claim,
    KindDelta,
    Store,
    StoreUnavailable,
    check_buckets,
    check_positive,
    check_target,
)

#: Seconds before the first re-probe of a store that failed; each failed probe doubles it ...
FIRST_PROBE = 1.0
#: ... up to this.
LAST_PROBE = 60.0
#: Seconds left on the lease of a digest given back unsent: it is re-offered at once.
RELEASED = 0.001
#: A heartbeat keeps a process "live" this many heartbeat intervals (one missed beat is not a death).
HEARTBEAT_LIVES = 3.0
_T = TypeVar("_T")
Say = Callable[[str, str], None]


class Decision(enum.Enum):
    """What to do with an alert of a kind new to this process (or of a higher level)."""

    PAGE = "page"  #: this process pages it now: the store opened the fleet's window
    FOLD = "fold"  #: the fleet already paged: count it and :meth:`Fleet.hand` the counts
    LOCAL = "local"  #: the store is unavailable: page and fold per process, as without shared state


class _Down:
    """What an operation returns when the store failed (the fleet is then degraded)."""


_DOWN = _Down()


def _new_process_id(host: str) -> str:
    return f"{host}:{os.getpid()}:{os.urandom(4).hex()}"


def _quiet(key: str, message: str) -> None:
    """Say nothing: the default ``say`` (the dispatcher passes its rate-limited diagnostics)."""


class Fleet:
    """One dispatcher's coordinator with the processes that page the same target; worker thread only.

    Args:
        store: The shared store (from ``_store.open_store``).
        target: :func:`target_key` of what the pager pages.
        window: Folding window, seconds (the pager's).
        lease: Seconds a claimed digest is this process's to send before another process may.
        buckets: The SMS budget, ``(capacity, period)`` each, shared by the fleet.
        circuit_cooldown: Seconds :meth:`pause` pauses the fleet when it is given no duration.
        process: This process's id; by default ``host:pid:random``, made anew in a forked child.
        host: This host's name (``socket.gethostname()``).
        clock: Monotonic clock for this object's own timing (sync interval, heartbeat, estimate, backoff).
        sync_interval: Seconds between two pushes of counts and claims (unless forced).
        heartbeat_every: Seconds between two heartbeats.
        say: ``say(key, message)`` for a diagnostic (the store failed, or answers again); messages name the
            store by its masked URL and carry no secret.
        max_kinds: Kinds a claimed digest keeps apart; the rest are "other kinds".
    """

    def __init__(
        self,
        store: Store,
        target: str,
        *,
        window: float,
        lease: float,
        buckets: Sequence[Bucket],
        circuit_cooldown: float,
        process: Optional[str] = None,
        host: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
        sync_interval: float = 1.0,
        heartbeat_every: float = 5.0,
        say: Say = _quiet,
        max_kinds: int = 200,
    ) -> None:
        check_target(target)
        check_positive(window=window, lease=lease, circuit_cooldown=circuit_cooldown, max_kinds=max_kinds)
        check_positive(sync_interval=sync_interval, heartbeat_every=heartbeat_every)
        check_buckets(buckets, 1)
        self.store, self.target, self.window, self.lease = store, target, window, lease
        self.buckets, self.circuit_cooldown, self.max_kinds = tuple(buckets), circuit_cooldown, max_kinds
        self.host = host or socket.gethostname()
        self._given_process = process
        self.clock, self.sync_interval, self.heartbeat_every, self._say = (
            clock,
            sync_interval,
            heartbeat_every,
            say,
        )
        #: Store operations this object made (each is one round trip).
        self.round_trips = 0
        self._reset()

    def _reset(self) -> None:
        """Start afresh (at construction, and in a forked child: the parent sends what it counted)."""
        self._pid = os.getpid()
        self._process = self._given_process or _new_process_id(self.host)
        self._deltas: dict[str, list[Any]] = {}  # kind -> [level, count, sample, first_seen, last_seen]
        self._estimate: Optional[tuple[float, int]] = None  # the fleet's window: (until, level), our clock
        self._active_until = -math.inf  # claim every sync until then (we counted, paged or claimed)
        self._last_sync = self._last_beat = self._circuit_at = -math.inf
        self._circuit: Optional[tuple[float, str]] = None  # (until on our clock, reason) as last read
        self._degraded, self._backoff, self._next_probe = False, FIRST_PROBE, 0.0
        self._left = False

    def _forked(self) -> None:
        if os.getpid() != self._pid:
            self._reset()

    @property
    def process(self) -> str:
        """Return this process's id in the store (a forked child has its own)."""
        self._forked()
        return self._process

    @property
    def degraded(self) -> bool:
        """True while the store is unavailable: page per process, and :meth:`merge` when it is False again."""
        self._forked()
        return self._degraded

    @property
    def unsent(self) -> int:
        """Alerts handed and not yet pushed to the store."""
        return sum(entry[1] for entry in self._deltas.values())

    def __repr__(self) -> str:
        state = "degraded" if self._degraded else "sharing"
        return f"Fleet({self.store.url!r}, target={self.target}, {state})"

    # --- store calls ----------------------------------------------------------------------------------
    def _try(self, operation: Callable[[], _T]) -> Union[_T, _Down]:
        """Run one store operation; a failure degrades the fleet and returns :data:`_DOWN`."""
        self.round_trips += 1
        try:
            return operation()
        except StoreUnavailable as exc:
            self._fail(exc)
            return _DOWN

    def _fail(self, exc: StoreUnavailable) -> None:
        """Go (or stay) degraded: say it once per outage, back off the next probe (1 s doubling to 60 s)."""
        if self._degraded:
            self._backoff = min(self._backoff * 2, LAST_PROBE)
        else:
            self._degraded, self._backoff = True, FIRST_PROBE
            self._say("shared-state-down", f"{exc}; paging per process until the shared state answers again")
        self._estimate, self._circuit = None, None
        self._next_probe = self.clock() + self._backoff

    def _beat(self, ttl: float) -> Optional[_Down]:
        """Say this process lives ``ttl`` more seconds; :data:`_DOWN` when the store failed."""
        return self._try(lambda: self.store.heartbeat(self.target, self._process, self.host, ttl))

    def _probe(self, now: float) -> None:
        """Try the store again (a heartbeat); on success, say once that sharing resumed."""
        if isinstance(self._beat(self.heartbeat_every * HEARTBEAT_LIVES), _Down):
            return
        self._degraded, self._backoff = False, FIRST_PROBE
        self._last_beat, self._last_sync = now, -math.inf
        self._say("shared-state-back", f"shared_state {self.store.url}: answers again; sharing resumed")

    # --- alerts -----------------------------------------------------------------------------------------
    def first(self, level: int) -> Decision:
        """Decide an alert of a kind new to this process (or of a higher level): PAGE, FOLD or LOCAL.

        Within the fleet's window as last seen (same or lower level) it folds without a round trip.
        """
        self._forked()
        if self._degraded:
            return Decision.LOCAL
        now = self.clock()
        estimate = self._estimate if self._estimate and now < self._estimate[0] else None
        if estimate is not None and level <= estimate[1]:
            self._active(now)
            return Decision.FOLD
        paged = self._try(lambda: self.store.observe(self.target, level=level, window=self.window))
        if isinstance(paged, _Down):
            return Decision.LOCAL
        self._active(now)
        if paged:
            self._estimate = (now + self.window, level)
            return Decision.PAGE
        # The fleet's window is open at a level >= ours; our counts re-arm it when claimed.
        self._estimate = (now + self.window, max(level, estimate[1] if estimate else level))
        return Decision.FOLD

    def _active(self, now: float) -> None:
        """Claim at every sync while counts this process saw may still be due."""
        self._active_until = max(
            self._active_until, now + 2 * self.window + self.lease + 2 * self.sync_interval
        )

    def hand(
        self, kind: str, level: int, count: int, sample: str, first_seen: float, last_seen: float
    ) -> bool:
        """Take ``count`` folded alerts of ``kind`` (merged locally per kind, pushed by :meth:`sync`).

        ``sample`` is :func:`encode_sample` of the kind's first alert. Returns False, taking nothing, while
        degraded: the caller counts them itself.
        """
        self._forked()
        if self._degraded:
            return False
        entry = self._deltas.get(kind)
        if entry is None:
            self._deltas[kind] = [level, count, sample[:MAX_SAMPLE_CHARS], first_seen, last_seen]
        else:
            entry[0], entry[1] = max(entry[0], level), entry[1] + count
            entry[2] = entry[2] or sample[:MAX_SAMPLE_CHARS]
            entry[3], entry[4] = min(entry[3], first_seen), max(entry[4], last_seen)
        return True

    def merge(self, deltas: Iterable[KindDelta]) -> bool:
        """Take the caller's local counts after the store came back: added, never observed (no first page)."""
        return all([self.hand(d.kind, d.level, d.count, d.sample, d.first_seen, d.last_seen) for d in deltas])

    def take_back(self) -> list[KindDelta]:
        """Return (and forget) the counts not pushed: after the store failed, the caller counts them."""
        self._forked()
        deltas = [KindDelta(kind, *entry) for kind, entry in self._deltas.items()]
        self._deltas = {}
        return deltas

    def _push(self, ttl: Optional[float] = None) -> bool:
        """Send the counts (with a heartbeat when ``ttl``); False when the store failed (they are kept)."""
        if not self._deltas:
            return True
        deltas = [KindDelta(kind, *entry) for kind, entry in self._deltas.items()]
        pushed = self._try(
            lambda: self.store.add(self.target, deltas, process=self._process, host=self.host, ttl=ttl)
        )
        if isinstance(pushed, _Down):
            return False
        self._deltas = {}
        return True

    # --- the periodic step ------------------------------------------------------------------------------
    def sync(self, force: bool = False) -> Optional[Claim]:
        """Push counts, heartbeat, claim a due digest: at most once per ``sync_interval`` unless ``force``.

        At most two round trips: counts with the heartbeat, then a claim. Returns a digest this process must
        send (then :meth:`ack` it), or None. While degraded it only re-probes when the backoff allows.
        """
        self._forked()
        now = self.clock()
        if self._degraded:
            if now >= self._next_probe:
                self._probe(now)
            return None
        if not force and now - self._last_sync < self.sync_interval:
            return None
        self._last_sync = now
        beat = not self._left and now - self._last_beat >= self.heartbeat_every
        ttl = self.heartbeat_every * HEARTBEAT_LIVES if beat else None
        if self._deltas:
            if not self._push(ttl):
                return None
        elif ttl is not None and isinstance(self._beat(ttl), _Down):
            return None
        if beat:
            self._last_beat = now
        if force or beat or now < self._active_until:
            return self._claim(now, force=False)
        return None

    def _claim(self, now: float, *, force: bool) -> Optional[Claim]:
        claim = self._try(
            lambda: self.store.claim(
                self.target, window=self.window, lease=self.lease, max_kinds=self.max_kinds, force=force
            )
        )
        if isinstance(claim, _Down) or claim is None:
            return None
        self._active(now)
        if not claim.reoffered:  # the claim re-armed the fleet's window at the level it claimed
            self._estimate = (now + self.window, max(kind.level for kind in claim.kinds))
        return claim

    def final_claim(self) -> Optional[Claim]:
        """Push the counts and claim what is pending NOW, window or not (flush, the last process leaving).

        An expired lease is re-offered first: call it until it returns None (a few times at most).
        """
        self._forked()
        if self._degraded or not self._push():
            return None
        return self._claim(self.clock(), force=True)

    def leave(self) -> int:
        """Push the counts and leave; return the live processes left (0: send what is pending yourself).

        When the store fails, 0: the caller takes its counts back and sends them as today.
        """
        self._forked()
        if self._degraded or not self._push():
            return 0
        left = self._try(lambda: self.store.leave(self.target, self._process))
        self._left = True
        return 0 if isinstance(left, _Down) else left

    # --- claims, budget, circuit -----------------------------------------------------------------------
    def renew(self, claim: Claim) -> bool:
        """Keep a claimed digest while its send is retried; False when another process took it over."""
        renewed = self._try(lambda: self.store.renew(self.target, claim.claim_id, self.lease))
        return True if isinstance(renewed, _Down) else renewed  # unknown: keep sending (at least once)

    def release(self, claim: Claim) -> None:
        """Give a claimed digest back unsent (exiting with no budget left): the next claim re-offers it."""
        self._try(lambda: self.store.renew(self.target, claim.claim_id, RELEASED))

    def ack(self, claim: Claim) -> None:
        """Forget a digest that went out (if the store fails, another process may send it again)."""
        self._try(lambda: self.store.ack(self.target, claim.claim_id))

    def spend(self) -> Optional[float]:
        """Take one page from the fleet's budget: 0.0 when paid, else seconds to wait; None: degraded."""
        self._forked()
        if self._degraded:
            return None
        waited = self._try(lambda: self.store.spend(self.target, self.buckets))
        return None if isinstance(waited, _Down) else waited

    def hold(self) -> None:
        """Note that the budget held a page back: the next claimed digest says since when."""
        if not self.degraded:
            self._try(lambda: self.store.hold(self.target))

    def paused(self) -> Optional[tuple[float, str]]:
        """Return ``(seconds left, reason)`` while the fleet's circuit is open, else None (or degraded).

        Read from the store at most once per ``sync_interval``; in between, the last answer counts.
        """
        self._forked()
        if self._degraded:
            return None
        now = self.clock()
        if now - self._circuit_at >= self.sync_interval:
            found = self._try(lambda: self.store.circuit(self.target))
            self._circuit_at = now
            self._circuit = None if isinstance(found, _Down) or found is None else (now + found[0], found[1])
        if self._circuit is None or now >= self._circuit[0]:
            return None
        return self._circuit[0] - now, self._circuit[1]

    def pause(self, seconds: Optional[float], reason: str) -> None:
        """Pause every process's sending (an auth or permission failure); None: ``circuit_cooldown``."""
        seconds = self.circuit_cooldown if seconds is None else seconds
        if not self.degraded and not isinstance(
            self._try(lambda: self.store.open_circuit(self.target, seconds, reason)), _Down
        ):
            self._circuit, self._circuit_at = (self.clock() + seconds, reason), self.clock()

    def resume(self) -> None:
        """End the fleet's pause (a page went out again)."""
        if not self.degraded:
            self._try(lambda: self.store.close_circuit(self.target))
            self._circuit = None

    def status(self) -> dict[str, Any]:
        """Return the fleet view (``Store.status``) and this process's side: degraded, unsent, round trips."""
        view = self._try(lambda: self.store.status(self.target)) if not self.degraded else _DOWN
        local = {"degraded": self._degraded, "unsent": self.unsent, "round_trips": self.round_trips}
        return {**({} if isinstance(view, _Down) else view), **local}
