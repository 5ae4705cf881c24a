"""Assemble the paging pipeline from settings: client, sender, pager and dispatcher.

``SMNHandler`` and ``SMNProcessor`` are thin adapters over the same pipeline; this module is where the
settings turn into parts, so both build it the same way and tests can swap the sender and the clock.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional, Union

from smn_alert._client import SMNClient
from smn_alert._compose import PageContext
from smn_alert._diagnostics import Diagnostics
from smn_alert._dispatcher import Dispatcher
from smn_alert._ledger import Ledger
from smn_alert._pager import Pager
from smn_alert._ratelimit import Budget, CircuitBreaker, RetryPolicy, TokenBucket
from smn_alert._senders import Sender, SmsSender, TopicSender
from smn_alert._settings import PagerSettings
from smn_alert._smn import LONG_WINDOW, is_mainland_china
from smn_alert._text import billed_segments, compile_redactions

#: The longest a circuit stays open after repeated auth or permission failures.
MAX_CIRCUIT_COOLDOWN = 1800.0

if TYPE_CHECKING:
    from smn_alert._sharing import SharedBudget, Sharing
    from smn_alert._store import Store

# One store per shared_state URL per process, shared by its handlers and processors (each store is
# thread-safe and reconnects in a forked child).
_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def build_sender(settings: PagerSettings) -> Sender:
    """Build the sender for ``settings.mode``: SmsBatchPublish to the numbers, or a topic publish.

    The request fields were checked when ``settings`` were resolved; the sender checks only each page's text.
    """
    client = SMNClient(**settings.connection)  # type: ignore[arg-type]
    client.prepare()  # import requests now, not on the worker (see SMNClient.prepare)
    if settings.mode == "topic":
        assert settings.topic_urn is not None
        return TopicSender(client, settings.topic_urn, subject=settings.subject)
    return SmsSender(
        client,
        settings.endpoints,
        sign_id=settings.sign_id,
        message_include_sign_flag=settings.message_include_sign_flag,
        signature=settings.signature,
        extend_code=settings.extend_code,
        extend_src_id=settings.extend_src_id,
    )


def build_dispatcher(
    settings: PagerSettings,
    *,
    sender: Optional[Sender] = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    name: str = "smn_alert",
) -> Dispatcher:
    """Build a dispatcher that pages per ``settings`` (``sender`` and clocks are injectable for tests)."""
    redactions = compile_redactions(settings.redact_patterns)
    signature = settings.signature or ""  # the sender puts it first, so the text gets the rest
    room = settings.max_length - len(signature)
    context = PageContext(prefix=settings.prefix, max_length=room, redactions=redactions)

    def segments(text: str, recipient: str) -> int:
        # Per number: mainland China numbers bill as UCS-2. A topic counts once per publish.
        mainland = not recipient.startswith("urn:") and is_mainland_china(recipient)
        return billed_segments(text, signature=signature, mainland=mainland)

    store = shared_store(settings, injected_sender=sender is not None)

    def make_pager(ledger: Ledger) -> Pager:
        budget = Budget(
            TokenBucket(settings.budget, settings.budget_period, clock=clock),
            TokenBucket(settings.budget_12h, LONG_WINDOW, clock=clock),
        )
        share, bucket = _sharing(settings, store, budget, clock) if store is not None else (None, budget)
        return Pager(
            context,
            bucket,
            CircuitBreaker(
                settings.circuit_cooldown, max(MAX_CIRCUIT_COOLDOWN, settings.circuit_cooldown), clock=clock
            ),
            RetryPolicy(max_age=settings.max_retry_age),
            window=settings.window,
            segments=segments,
            rng=random.Random(),
            wall=wall,
            ledger=ledger,
            share=share,
        )

    return Dispatcher(
        sender if sender is not None else build_sender(settings),
        make_pager,
        capacity=settings.capacity,
        shutdown_timeout=settings.shutdown_timeout,
        clock=clock,
        name=name,
    )


def shared_store(settings: PagerSettings, *, injected_sender: bool) -> Optional[Store]:
    """Return the store ``settings.shared_state`` names (the process's one per URL), or None: nothing shared.

    Not given, the default SQLite file of this user on this host; but a test that injects its own sender
    shares nothing unless it asks, so tests do not fold into each other's incidents. Nothing connects here.
    """
    from smn_alert._store import open_store

    url = settings.shared_state
    if url is None and injected_sender:
        return None
    key = url or _default_key()
    with _STORES_LOCK:
        if key not in _STORES:
            store = open_store(url)
            if store is None:
                return None
            _STORES[key] = store
        return _STORES[key]


def _default_key() -> str:
    """Key the default store by its file (``$TMPDIR`` may differ between two handlers' constructions)."""
    from smn_alert._store_sqlite import default_path

    return default_path()


def _sharing(
    settings: PagerSettings, store: Store, local: Budget, clock: Callable[[], float]
) -> tuple[Sharing, Union[Budget, SharedBudget]]:
    """Build one pager's link to the processes paging the same people, and the budget they share."""
    from smn_alert._client_settings import endpoint_of
    from smn_alert._fleet import Fleet
    from smn_alert._fleet_data import target_key
    from smn_alert._sharing import LEASE, SharedBudget, Sharing

    given = settings.connection
    endpoint = endpoint_of(given.get("region"), given.get("endpoint_url"))  # type: ignore[arg-type]
    target = target_key(
        numbers=settings.endpoints, topic_urn=settings.topic_urn, endpoint=endpoint, prefix=settings.prefix
    )
    diagnostics = Diagnostics()
    fleet = Fleet(
        store,
        target,
        window=settings.window,
        lease=LEASE,
        buckets=((settings.budget, settings.budget_period), (settings.budget_12h, LONG_WINDOW)),
        circuit_cooldown=settings.circuit_cooldown,
        clock=clock,
        say=lambda key, message: diagnostics.say(key, "%s", message),
    )
    return Sharing(fleet, compile_redactions(settings.redact_patterns)), SharedBudget(fleet, local, clock)
