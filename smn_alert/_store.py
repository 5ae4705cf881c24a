"""Shared state for every process that pages the same people: the store's operations, values and URL.

One incident, one page, across processes and hosts: processes keep the first-page decision, the folded counts,
who sends each digest (a lease, never a lock), the SMS budget and the circuit in a store, on SQLite (one host,
the default) or Redis (a fleet). Each operation is atomic and reads time only from the store's clock, so
every process sees the same decisions. Any failure raises :class:`StoreUnavailable`, and the caller falls back
to per-process paging: the store failing never stops a page.

Nothing secret is stored: targets and kinds are hashes, samples are already-redacted page texts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol
from urllib.parse import parse_qs, urlsplit

from smn_alert._smn import LONG_WINDOW
from smn_alert.errors import SMNConfigError

#: The environment variable of the ``shared_state`` setting.
ENV_SHARED_STATE = "SMN_ALERT_SHARED_STATE"
#: Longest sample text (characters) a kind keeps; page texts are shorter (490).
MAX_SAMPLE_CHARS = 1024
#: The ``kind`` of an entry that stands for the kinds beyond ``max_kinds`` at one level band.
OTHER_KINDS = "<other kinds>"
#: Levels from here up count in the CRITICAL band of "other kinds" (so a CRITICAL stays critical) ...
CRITICAL_BAND = 50
#: ... and the rest in the ERROR band.
ERROR_BAND = 40
#: A token bucket: ``(capacity, period)``, "capacity tokens per period seconds".
Bucket = tuple[float, float]
#: A window and its counts are kept this many windows past its end (then a quiet target leaves nothing) ...
KEEP_WINDOWS = 3
#: ... but at least this many seconds, so counts of a short window never vanish before a claim can read them.
MIN_KEEP = 60.0
#: Seconds counts that arrived with no window open are kept for a claim to find them.
ORPHAN_KEEP = 3600.0
#: Seconds a claimed digest is kept past its lease for another process to send it (as long as alerts live).
PAYLOAD_KEEP = 900.0
#: Seconds a note that a page was held back is kept for the next claim (the long budget bucket's period).
HELD_KEEP = LONG_WINDOW

# Store times near 2e9 s are exact to about 2e-7 s: a spend that fits within a microsecond fits.
EPSILON = 1e-6
_TARGET = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")
_SCHEMES = ("sqlite", "redis", "rediss", "unix")
# Query options a Redis URL may carry: anything else could undo the pinned timeouts and retries.
_REDIS_QUERY = frozenset(
    {"db", "username", "password", "client_name", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path",
     "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)  # fmt: skip
_SECRET_QUERY = re.compile(r"(?i)([?&]password=)[^&#]*")


class StoreUnavailable(Exception):
    """The shared store could not be used just now (refused, timed out, hung, busy, read-only).

    The caller falls back to per-process paging and tries the store again later. The message names the store
    with its password masked and never carries a secret (so the driver's exception is not chained).
    """


@dataclass(frozen=True)
class KindDelta:
    """Alerts of one kind that one process folded since it last reported (sent by :meth:`Store.add`).

    Attributes:
        kind: The kind's id (a fingerprint hash).
        level: Its logging level; the highest reported wins.
        count: How many alerts, >= 1.
        sample: Its redacted page text, kept when the kind has none yet in the window.
        first_seen: Wall-clock time of the first of them (merged by min).
        last_seen: Wall-clock time of the last (merged by max).
    """

    kind: str
    level: int
    count: int
    sample: str
    first_seen: float
    last_seen: float

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("KindDelta.kind must not be empty")
        if self.count < 1:
            raise ValueError(f"KindDelta.count={self.count}: must be at least 1")
        if len(self.sample) > MAX_SAMPLE_CHARS:
            raise ValueError(
                f"KindDelta.sample has {len(self.sample)} characters, at most {MAX_SAMPLE_CHARS}"
            )


@dataclass(frozen=True)
class KindCount:
    """Alerts of one kind in a claimed digest, counted over every process.

    Attributes:
        kind: The kind's id, or :data:`OTHER_KINDS` for kinds beyond ``max_kinds`` at one level band.
        level: Highest level reported for it.
        count: How many alerts.
        sample: A redacted page text of it ("" for other kinds).
        first_seen: Wall-clock time of the first.
        last_seen: Wall-clock time of the last.
        merged: How many kinds this entry stands for (1, or more for other kinds).
    """

    kind: str
    level: int
    count: int
    sample: str
    first_seen: float
    last_seen: float
    merged: int = 1


@dataclass(frozen=True)
class Claim:
    """A digest one process has claimed to send: ack it when the SMS went out, renew it while retrying.

    Attributes:
        claim_id: Names the claim in :meth:`Store.renew` and :meth:`Store.ack`.
        kinds: The counts, highest count first.
        processes: Distinct processes whose counts are in it.
        hosts: Distinct hosts they run on.
        held_since: Store time a page was first held back by the budget before this claim, if one was.
        window_started: Store time the folding window of these counts opened.
        reoffered: True when its first claimer's lease expired unacknowledged (it may have been sent).
    """

    claim_id: str
    kinds: tuple[KindCount, ...]
    processes: int
    hosts: int
    held_since: Optional[float]
    window_started: float
    reoffered: bool = False
    total: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", sum(kind.count for kind in self.kinds))


class Store(Protocol):
    """The operations processes share for one target (a hash of numbers or topic, endpoint and prefix).

    Each is atomic and decides on the store's clock; durations are seconds. Each raises
    :class:`StoreUnavailable` when the store cannot be used, and ``ValueError`` for a bad argument.
    """

    #: Where the state is, for diagnostics, with any password masked.
    url: str

    def observe(self, target: str, *, level: int, window: float) -> bool:
        """Decide whether an alert pages now; when it does, open (or re-arm) the target's window.

        Pages when there is no window, when the window ended with nothing counted and nothing claimed but
        unacknowledged, or when ``level`` is above the window's level (escalation). Otherwise the caller
        folds the alert into its local counts and sends them with :meth:`add`.
        """

    def add(
        self, target: str, deltas: Sequence[KindDelta], *, process: str, host: str, ttl: float | None = None
    ) -> None:
        """Merge one process's folded counts into the target's window and note the process as contributor.

        With ``ttl`` the same round trip is also :meth:`heartbeat` (one operation a second, not two).
        """

    def claim(
        self, target: str, *, window: float, lease: float, max_kinds: int = 200, force: bool = False
    ) -> Claim | None:
        """Take a digest to send, under a lease of ``lease`` seconds, or return None when none is due.

        First re-offers a claim whose lease expired unacknowledged. Else, when the window has ended, reads and
        resets its counts in one step and re-arms the window; when nothing was counted the target is quiet.
        With ``force`` the counts are taken even while the window is open (a flush, the last process leaving).
        """

    def renew(self, target: str, claim_id: str, lease: float) -> bool:
        """Extend a claim's lease to ``lease`` seconds from now; False when it was lost to another process."""

    def ack(self, target: str, claim_id: str) -> None:
        """Forget a claim whose digest was sent."""

    def spend(self, target: str, buckets: Sequence[Bucket], cost: float = 1) -> float:
        """Take ``cost`` from every bucket or none: 0.0 when taken, else the seconds until it could be."""

    def hold(self, target: str) -> None:
        """Note that a page was held back by the budget; the next claim says since when."""

    def open_circuit(self, target: str, seconds: float, reason: str) -> None:
        """Pause every process's sending for ``seconds`` (never shortens a pause already open)."""

    def circuit(self, target: str) -> tuple[float, str] | None:
        """Return ``(seconds left, reason)`` while the circuit is open, else None."""

    def close_circuit(self, target: str) -> None:
        """End the pause."""

    def heartbeat(self, target: str, process: str, host: str, ttl: float) -> None:
        """Say that ``process`` on ``host`` lives for ``ttl`` more seconds."""

    def leave(self, target: str, process: str) -> int:
        """Say that ``process`` left; return how many processes still live."""

    def live(self, target: str) -> tuple[int, int]:
        """Return ``(processes, hosts)`` with an unexpired heartbeat."""

    def status(self, target: str) -> dict[str, Any]:
        """Return the fleet view of a target (window, counts waiting, leases, budget, circuit, processes)."""

    def targets(self) -> list[str]:
        """Return the targets that have state in the store."""

    def close(self) -> None:
        """Release the connection (a later operation opens a new one)."""


def check_target(target: str) -> str:
    """Return ``target`` when it is a valid key (1-128 of ``A-Z a-z 0-9 _ . : -``), else raise ValueError."""
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(f"target {target!r}: expected 1-128 characters of A-Z a-z 0-9 _ . : -")
    return target


def check_positive(**values: float) -> None:
    """Raise ValueError naming the first of ``values`` that is not a positive number."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name}={value!r}: must be positive")


def check_buckets(buckets: Sequence[Bucket], cost: float) -> list[tuple[str, float, float]]:
    """Validate a budget and return ``(name, capacity, period)`` per bucket; names key the stored state.

    A bucket is named by its capacity and period, so processes configured differently never share one.
    """
    if not buckets:
        raise ValueError("buckets: at least one (capacity, period) is needed")
    check_positive(cost=cost)
    named = []
    for capacity, period in buckets:
        check_positive(capacity=capacity, period=period)
        if cost > capacity:
            raise ValueError(f"cost={cost} is more than capacity={capacity}: it could never be spent")
        named.append((f"{_number(capacity)}/{_number(period)}", float(capacity), float(period)))
    return named


def _number(value: float) -> str:
    """Write a number the same way every time, without a needless ``.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def gcra(
    tats: Sequence[float | None], buckets: Sequence[tuple[str, float, float]], cost: float, now: float
) -> tuple[float, list[float]]:
    """Decide a spend on several buckets at once (GCRA): return ``(wait, new theoretical arrival times)``.

    A bucket of ``capacity`` per ``period`` is one value, the theoretical arrival time (TAT): a spend moves
    it ``cost * period / capacity`` into the future, and it may run at most ``period`` ahead of now. ``wait``
    is 0.0 when every bucket allows it, else the seconds until all would. The Redis script mirrors this.
    """
    wait, new = 0.0, []
    for tat, (_, capacity, period) in zip(tats, buckets):
        ahead = max(tat - now, 0.0) if tat is not None else 0.0
        ahead += cost * period / capacity  # how far the arrival time runs ahead of now after this spend
        if ahead - period > EPSILON:
            wait = max(wait, ahead - period)
        new.append(now + ahead)
    return wait, new


def merge_kinds(kinds: Sequence[KindCount], max_kinds: int) -> list[KindCount]:
    """Keep the ``max_kinds`` largest counts; merge the rest into an :data:`OTHER_KINDS` entry per level band.

    Bands keep a CRITICAL critical: levels >= :data:`CRITICAL_BAND` are merged apart from the others. Ties are
    broken by kind id so every backend gives the same answer. The Redis script mirrors this.
    """
    ordered = sorted(kinds, key=lambda kind: (-kind.count, kind.kind))
    kept, rest = ordered[:max_kinds], ordered[max_kinds:]
    for critical in (True, False):
        band = [kind for kind in rest if (kind.level >= CRITICAL_BAND) is critical]
        if band:
            kept.append(_merged(band))
    return kept


def _merged(band: Sequence[KindCount]) -> KindCount:
    """Return one entry counting all of ``band``."""
    return KindCount(
        kind=OTHER_KINDS,
        level=max(kind.level for kind in band),
        count=sum(kind.count for kind in band),
        sample="",
        first_seen=min(kind.first_seen for kind in band),
        last_seen=max(kind.last_seen for kind in band),
        merged=sum(kind.merged for kind in band),
    )


def encode_payload(
    kinds: Sequence[KindCount], processes: int, hosts: int, held_since: float | None, started: float
) -> str:
    """Write a claimed digest as the JSON both backends store (floats as text: Lua's cjson rounds them)."""
    data: dict[str, Any] = {
        "k": [
            [k.kind, k.level, k.count, k.sample, repr(k.first_seen), repr(k.last_seen), k.merged]
            for k in kinds
        ],
        "p": processes,
        "h": hosts,
        "start": repr(started),
    }
    if held_since is not None:
        data["held"] = repr(held_since)
    return json.dumps(data, separators=(",", ":"))


def decode_claim(claim_id: str, payload: str, reoffered: bool) -> Claim:
    """Read a stored digest back as a :class:`Claim`."""
    data = json.loads(payload)
    kinds = tuple(
        KindCount(str(kind), int(level), int(count), str(sample), float(first), float(last), int(merged))
        for kind, level, count, sample, first, last, merged in data["k"] or ()
    )
    held = data.get("held")
    return Claim(
        claim_id=claim_id,
        kinds=kinds,
        processes=int(data["p"]),
        hosts=int(data["h"]),
        held_since=None if held is None else float(held),
        window_started=float(data["start"]),
        reoffered=reoffered,
    )


def mask_url(url: str) -> str:
    """Return ``url`` for display: user info after the user name and any ``password=`` value become ``***``.

    Everything up to the last ``@`` before the query counts as user info, so a password with an unescaped
    ``/`` or ``@`` is still masked.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        userinfo, at, _ = re.split(r"[?#]", rest, maxsplit=1)[0].rpartition("@")
        if at:
            user, colon, _ = userinfo.partition(":")
            rest = (f"{user}:***@" if colon else "***@") + rest[len(userinfo) + 1 :]
        url = f"{scheme}{sep}{rest}"
    return _SECRET_QUERY.sub(r"\1***", url)


def check_url(url: str | None) -> str:
    """Return a ``shared_state`` setting as :func:`open_store` reads it ("" for the default), or raise.

    Raises:
        SMNConfigError: Not a store URL this module knows, or a Redis URL with an option that is not allowed.
    """
    text = (url or "").strip()
    if text in ("", "process"):
        return text
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in _SCHEMES:
        raise _url_error(text, "unknown kind of store")
    if scheme == "sqlite":
        _sqlite_path(text)
    else:
        _check_redis_url(text)
    return text


def open_store(url: str | None) -> Store | None:
    """Return the store a ``shared_state`` setting names, or None for ``"process"`` (nothing shared).

    Nothing is connected yet: the first operation connects, in the process that runs it.

    Args:
        url: None or "" for the default SQLite file of this user on this host; ``sqlite:///abs/path.db``;
            ``redis://[user:password@]host:port/db``, ``rediss://...`` or ``unix:///path.sock?db=N``
            (needs ``pip install "smn-alert[redis]"``); or ``"process"``.

    Raises:
        SMNConfigError: The URL is not one of these, or the redis package is missing.
    """
    text = check_url(url)
    if text == "process":
        return None
    from smn_alert import _store_sqlite

    if not text:
        return _store_sqlite.SQLiteStore(_store_sqlite.default_path(), private_dir=True)
    if text.lower().startswith("sqlite://"):
        return _store_sqlite.SQLiteStore(_sqlite_path(text), private_dir=False)
    return _redis_store(text)


def _url_error(url: str, why: str) -> SMNConfigError:
    """Return the error for a bad ``shared_state``, showing the URL with its password masked."""
    return SMNConfigError(
        f"shared_state {mask_url(url)!r}: {why}; expected 'sqlite:///abs/path.db', "
        "'redis://[user:password@]host:port/db', 'rediss://...', 'unix:///path.sock?db=N' or 'process'"
    )


def _sqlite_path(url: str) -> str:
    """Return the absolute file path of a ``sqlite:///abs/path.db`` URL."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or parts.path.endswith("/"):
        raise _url_error(url, "a SQLite store needs an absolute file path after 'sqlite://'")
    if parts.query or parts.fragment:
        raise _url_error(url, "a SQLite URL takes no options")
    return os.path.normpath(parts.path)


def _check_redis_url(url: str) -> None:
    """Raise SMNConfigError unless ``url`` names a Redis server, a database number and known options only."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when it is not a number in 0-65535
    except ValueError:  # its text can quote part of a password taken for a port: not shown
        raise _url_error(url, "not a valid URL (look at the user info, host and port)") from None
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise _url_error(url, "a unix:// URL needs the socket's path")
    elif not parts.hostname or port == 0:
        raise _url_error(url, "a Redis URL needs a host (and a port from 1 to 65535)")
    elif parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise _url_error(url, f"the database after the host must be a number, not {parts.path[1:]!r}")
    _check_redis_query(url, parts.query)


def _check_redis_query(url: str, query: str) -> None:
    """Refuse query options that are unknown or would undo the pinned timeouts and retries."""
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - _REDIS_QUERY)
    if unknown:
        raise _url_error(url, f"option(s) {', '.join(unknown)} not allowed (timeouts and retries are fixed)")
    if any(len(values) > 1 for values in options.values()):
        raise _url_error(url, "an option is given twice")
    if "db" in options and not options["db"][0].isdigit():
        raise _url_error(url, "db must be a number")


def _redis_store(url: str) -> Store:
    """Build the Redis store, importing redis-py only now (it is an optional extra)."""
    try:
        from smn_alert import _store_redis
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "redis":
            raise
        raise _url_error(url, 'the redis package is not installed: pip install "smn-alert[redis]"') from None
    return _store_redis.RedisStore(url)


def status_view(
    target: str,
    now: float,
    window: tuple[float, int, float] | None,
    counts: tuple[int, int],
    leases: Sequence[float],
    held_since: float | None,
    tats: dict[str, float],
    circuit: tuple[float, str] | None,
    live: tuple[int, int],
) -> dict[str, Any]:
    """Build the fleet view both backends return from :meth:`Store.status`.

    Args:
        target: The target.
        now: Store time.
        window: ``(end, level, started)`` of the open or due window.
        counts: ``(kinds, alerts)`` counted and waiting for a digest.
        leases: Lease ends of claimed, unacknowledged digests.
        held_since: When a page was first held back by the budget, if one is.
        tats: Theoretical arrival time per bucket name (``"5/600"``); buckets not listed are full.
        circuit: ``(until, reason)`` while it is open.
        live: ``(processes, hosts)`` with a live heartbeat.
    """
    return {
        "target": target,
        "window": None
        if window is None
        else {"ends_in": window[0] - now, "level": window[1], "started": window[2]},
        "kinds": counts[0],
        "waiting": counts[1],
        "leases": len(leases),
        "expired_leases": sum(1 for end in leases if end <= now),
        "held_since": held_since,
        "budget": {name: _tokens_left(name, tat, now) for name, tat in sorted(tats.items()) if tat > now},
        "circuit": None
        if circuit is None or circuit[0] <= now
        else {"seconds_left": circuit[0] - now, "reason": circuit[1]},
        "processes": live[0],
        "hosts": live[1],
    }


def _tokens_left(name: str, tat: float, now: float) -> float:
    """Return the tokens a bucket named ``capacity/period`` holds when its arrival time is ``tat``."""
    capacity, period = (float(part) for part in name.split("/"))
    return max(0.0, capacity - (tat - now) * capacity / period)
