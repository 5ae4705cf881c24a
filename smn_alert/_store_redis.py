"""The shared store on Redis: a fleet of hosts, one Lua script per operation, on the server's clock.

The scripts are in ``_store_redis.lua``. Every key of a target is under one hash tag, ``{smn:<target>}``, and
declared in KEYS, so one Cluster slot and one clock serve the target. The client is pinned: short socket and
connect timeouts and no retries (redis-py's defaults retry with backoff, or block for ever on a hung server),
so an operation fails within about :data:`SOCKET_TIMEOUT` and the caller falls back to per-process paging. A
timed-out script may still run when the server resumes: its effect is unknown, and paging fails open.
``register_script`` loads a script again after a restart or failover emptied the server's script cache.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import RedisError
from redis.retry import Retry

from smn_alert._store import (
    CRITICAL_BAND,
    EPSILON,
    HELD_KEEP,
    KEEP_WINDOWS,
    MIN_KEEP,
    ORPHAN_KEEP,
    OTHER_KINDS,
    PAYLOAD_KEEP,
    Bucket,
    Claim,
    KindDelta,
    StoreUnavailable,
    check_buckets,
    check_positive,
    check_target,
    decode_claim,
    mask_url,
    status_view,
)

#: Seconds a connect or a command may take (each try; retries are off) before the store is unavailable.
SOCKET_TIMEOUT = 0.2
_KEYS = (
    "win", "count", "level", "sample", "first", "last", "who",
    "leases", "payloads", "budget", "held", "circuit", "live", "hosts",
)  # fmt: skip
_KEY = re.compile(r"\{smn:([^}]+)\}:")
# RESP2 with every server and redis-py version: redis-py 5+ can speak RESP3 and 8.x does by default (HELLO
# and a maintenance-notification handshake on each connect: more round trips; servers before 6 refuse HELLO).
_PROTOCOL = {"protocol": 2} if int(redis.__version__.split(".")[0]) >= 5 else {}
_FORK_LOCK = threading.Lock()


def key_names(target: str) -> list[str]:
    """Return every key of ``target``, all under the hash tag ``{smn:<target>}``, in the scripts' order."""
    return [f"{{smn:{target}}}:{name}" for name in _KEYS]


def _scripts() -> dict[str, str]:
    """Read the scripts from ``_store_redis.lua``, each with the prelude (constants and helpers) before it."""
    constants = {
        "KEEP_WINDOWS": KEEP_WINDOWS,
        "MIN_KEEP": MIN_KEEP,
        "ORPHAN_KEEP": ORPHAN_KEEP,
        "PAYLOAD_KEEP": PAYLOAD_KEEP,
        "HELD_KEEP": HELD_KEEP,
        "EPSILON": EPSILON,
        "CRITICAL_BAND": CRITICAL_BAND,
    }
    head = "".join(f"local {name} = {value!r}\n" for name, value in constants.items())
    head += f"local OTHER_KINDS = {json.dumps(OTHER_KINDS)}\n"
    parts = re.split(r"^--- (\w+)\n", Path(__file__).with_suffix(".lua").read_text("utf-8"), flags=re.M)
    sources = dict(zip(parts[1::2], parts[2::2]))
    prelude = head + sources.pop("prelude")
    return {name: prelude + body for name, body in sources.items()}


_SOURCES = _scripts()


def _secrets(url: str) -> list[str]:
    """Return the URL's password in every spelling an error message could repeat."""
    parts = urlsplit(url)
    found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    return [text for secret in found if secret for text in {secret, unquote(secret)}]


class RedisStore:
    """The :class:`~smn_alert._store.Store` on Redis; thread-safe and fork-safe.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL, already checked by ``open_store``.
    """

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        self._raw_url = url
        self._secrets = _secrets(url)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Script] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def close(self) -> None:
        """Close this process's connections; the next operation opens new ones."""
        with self._locked():
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- connection ------------------------------------------------------------------------------------------

    def _locked(self) -> threading.Lock:
        """Return this process's lock; after a fork, forget the parent's client (redis-py never shares it)."""
        if self._pid != os.getpid():
            with _FORK_LOCK:
                if self._pid != os.getpid():
                    self._client, self._lock, self._pid = None, threading.Lock(), os.getpid()
        return self._lock

    def _connection(self) -> tuple[redis.Redis, dict[str, Script]]:
        """Return this process's client and scripts (built on first use; nothing connects until a command)."""
        with self._locked():
            if self._client is None:
                client = redis.Redis.from_url(
                    self._raw_url,
                    socket_timeout=SOCKET_TIMEOUT,
                    socket_connect_timeout=SOCKET_TIMEOUT,
                    # Never retry: one bounded try, then the caller pages per process. (retry_on_timeout is
                    # False by default and deprecated in redis-py 6; passing it would only warn.)
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=0,
                    decode_responses=True,
                    **_PROTOCOL,
                )
                self._scripts = {name: client.register_script(source) for name, source in _SOURCES.items()}
                self._client = client
            return self._client, self._scripts

    def _call(self, name: str, target: str, *args: str | int | float) -> Any:
        """Run script ``name`` on ``target``'s keys; any failure is :class:`StoreUnavailable`."""
        check_target(target)
        try:
            client, scripts = self._connection()
            return scripts[name](keys=key_names(target), args=args, client=client)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """Describe ``exc`` without any secret (the driver's exception is not chained: it could carry one)."""
        message = f"shared_state {self.url}: {type(exc).__name__}: {exc}"
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return StoreUnavailable(message)

    # -- operations ------------------------------------------------------------------------------------------

    def observe(self, target: str, *, level: int, window: float) -> bool:
        """See :meth:`smn_alert._store.Store.observe`."""
        check_positive(window=window)
        return bool(self._call("observe", target, int(level), float(window)) == 1)

    def add(
        self, target: str, deltas: Sequence[KindDelta], *, process: str, host: str, ttl: float | None = None
    ) -> None:
        """See :meth:`smn_alert._store.Store.add`; no round trip when there is nothing to add."""
        if ttl is not None:
            check_positive(ttl=ttl)
        if not deltas:
            return
        args: list[str | int | float] = [process, host, "" if ttl is None else float(ttl), len(deltas)]
        for delta in deltas:
            args += [delta.kind, delta.level, delta.count, delta.sample, delta.first_seen, delta.last_seen]
        self._call("add", target, *args)

    def claim(
        self, target: str, *, window: float, lease: float, max_kinds: int = 200, force: bool = False
    ) -> Claim | None:
        """See :meth:`smn_alert._store.Store.claim`."""
        check_positive(window=window, lease=lease, max_kinds=max_kinds)
        claim_id = uuid.uuid4().hex
        args = (claim_id, float(window), float(lease), int(max_kinds), int(force))
        found = self._call("claim", target, *args)
        return None if found is None else decode_claim(claim_id, found[0], found[1] == 1)

    def renew(self, target: str, claim_id: str, lease: float) -> bool:
        """See :meth:`smn_alert._store.Store.renew`."""
        check_positive(lease=lease)
        return bool(self._call("renew", target, claim_id, float(lease)) == 1)

    def ack(self, target: str, claim_id: str) -> None:
        """See :meth:`smn_alert._store.Store.ack`."""
        self._call("ack", target, claim_id)

    def spend(self, target: str, buckets: Sequence[Bucket], cost: float = 1) -> float:
        """See :meth:`smn_alert._store.Store.spend`."""
        args: list[str | int | float] = [float(cost), len(buckets)]
        for name, capacity, period in check_buckets(buckets, cost):
            args += [name, capacity, period]
        return float(self._call("spend", target, *args))

    def hold(self, target: str) -> None:
        """See :meth:`smn_alert._store.Store.hold`."""
        self._call("hold", target)

    def open_circuit(self, target: str, seconds: float, reason: str) -> None:
        """See :meth:`smn_alert._store.Store.open_circuit`."""
        check_positive(seconds=seconds)
        self._call("open_circuit", target, float(seconds), reason)

    def circuit(self, target: str) -> tuple[float, str] | None:
        """See :meth:`smn_alert._store.Store.circuit`."""
        found = self._call("circuit", target)
        return None if found is None else (float(found[0]), str(found[1]))

    def close_circuit(self, target: str) -> None:
        """See :meth:`smn_alert._store.Store.close_circuit`."""
        self._call("close_circuit", target)

    def heartbeat(self, target: str, process: str, host: str, ttl: float) -> None:
        """See :meth:`smn_alert._store.Store.heartbeat`."""
        check_positive(ttl=ttl)
        self._call("heartbeat", target, process, host, float(ttl))

    def leave(self, target: str, process: str) -> int:
        """See :meth:`smn_alert._store.Store.leave`."""
        return int(self._call("leave", target, process))

    def live(self, target: str) -> tuple[int, int]:
        """See :meth:`smn_alert._store.Store.live`."""
        processes, hosts = self._call("live", target)
        return int(processes), int(hosts)

    def status(self, target: str) -> dict[str, Any]:
        """See :meth:`smn_alert._store.Store.status`."""
        raw = json.loads(self._call("status", target))
        window, circuit, held = raw.get("window"), raw.get("circuit"), raw.get("held")
        return status_view(
            target,
            float(raw["now"]),
            None if window is None else (float(window[0]), int(window[1]), float(window[2])),
            (int(raw["counts"][0]), int(raw["counts"][1])),
            [float(end) for end in raw["leases"] or ()],
            None if held is None else float(held),
            {name: float(tat) for name, tat in (raw["budget"] or {}).items()},
            None if circuit is None else (float(circuit[0]), str(circuit[1])),
            (int(raw["live"][0]), int(raw["live"][1])),
        )

    def targets(self) -> list[str]:
        """See :meth:`smn_alert._store.Store.targets` (scans the database: for a status command only)."""
        try:
            client, _ = self._connection()
            keys = client.scan_iter(match="{smn:*}:*", count=1000)
            return sorted({match.group(1) for key in keys if (match := _KEY.match(key))})
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
