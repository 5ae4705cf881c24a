"""The fleet coordinator (issue 11, layer 2): several ``Fleet`` objects, each a "process" with its own id, on
ONE real store (a SQLite file, and a real Redis server for the key cases).

The fleet's own timing (sync interval, heartbeat, estimate, backoff) runs on a ``FakeClock``; the store's
clock is real, so windows and leases are short (0.3-0.4 s) and the tests wait on conditions. Round trips are
counted by a wrapper around the store.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional, cast

import pytest

from smn_alert._alert import Alert
from smn_alert._compose import PageContext
from smn_alert._fleet import FIRST_PROBE, HEARTBEAT_LIVES, LAST_PROBE, Decision, Fleet
from smn_alert._fleet_data import (
    ID_CHARS,
    claim_groups,
    compose_claim,
    decode_sample,
    encode_sample,
    kind_id,
    target_key,
)
from smn_alert._store import MAX_SAMPLE_CHARS, OTHER_KINDS, Claim, KindCount, KindDelta, Store, open_store
from smn_alert.testing import FakeClock
from tests.redis_server import RedisServer

WINDOW = 0.4
LEASE = 0.3
BUCKETS = [(5.0, 600.0), (150.0, 43200.0)]
ERROR, CRITICAL, WARNING = 40, 50, 30
T0 = 1_700_000_000.0


class Counting:
    """A store that counts its operations (each is one round trip): ``calls`` lists their names."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return operation(*args, **kwargs)

        return counted


class Said:
    """Collects what a fleet says: ``(key, message)``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, key: str, message: str) -> None:
        self.lines.append((key, message))

    def keys(self) -> list[str]:
        return [key for key, _ in self.lines]


def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``condition`` until it returns something true; return it. Fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def sample(message: str = "db timeout", level: int = ERROR, logger: str = "app.db") -> str:
    alert = Alert(level, logging.getLevelName(level), logger, message, message, created=T0)
    return encode_sample(alert)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/state.db"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else str(request.getfixturevalue("redis_server").url)


@pytest.fixture
def target() -> str:
    return uuid.uuid4().hex


class Processes:
    """Makes fleets that stand for processes: each its own store connection, id, clock and diagnostics."""

    def __init__(self, url: str, target: str) -> None:
        self.url, self.target = url, target
        self.stores: list[Counting] = []
        self.said: dict[str, Said] = {}

    def make(
        self, name: str, host: str = "h1", clock: Optional[FakeClock] = None, **options: Any
    ) -> tuple[Fleet, Counting, FakeClock]:
        opened = open_store(self.url)
        assert opened is not None
        store = Counting(opened)
        self.stores.append(store)
        clock = clock or FakeClock()
        self.said[name] = Said()
        settings: dict[str, Any] = {"window": WINDOW, "lease": LEASE, "buckets": BUCKETS}
        settings.update(circuit_cooldown=60.0, process=name, host=host, clock=clock, say=self.said[name])
        settings.update(options)
        return Fleet(cast(Store, store), self.target, **settings), store, clock

    def close(self) -> None:
        for store in self.stores:
            store.inner.close()


@pytest.fixture
def processes(url: str, target: str) -> Iterator[Processes]:
    made = Processes(url, target)
    yield made
    made.close()


@pytest.fixture
def on_sqlite(sqlite_url: str, target: str) -> Iterator[Processes]:
    made = Processes(sqlite_url, target)
    yield made
    made.close()


def claim_all(fleets: list[Fleet], timeout: float = 5.0) -> Claim:
    """Sync every fleet (forced) until one of them claims a digest; return it."""

    def one() -> Optional[Claim]:
        for fleet in fleets:
            claim = fleet.sync(force=True)
            if claim is not None:
                return claim
        return None

    return cast(Claim, wait_until(one, timeout))


class TestFirstPage:
    def test_exactly_one_page_per_quiet_spell(self, processes: Processes) -> None:
        """Four processes meet a new kind at once: one pages, three fold; after a quiet window, again."""
        fleets = [processes.make(f"p{n}")[0] for n in range(4)]
        assert [fleet.first(ERROR) for fleet in fleets] == [Decision.PAGE] + [Decision.FOLD] * 3
        time.sleep(WINDOW + 0.05)  # nothing was counted: the spell ends quiet
        for fleet, clock in zip(fleets, [FakeClock(2000.0)] * 4):
            fleet.clock = clock  # the fleets' own estimate of the window has ended too
        assert [fleet.first(ERROR) for fleet in fleets] == [Decision.PAGE] + [Decision.FOLD] * 3

    def test_repeats_fold_without_a_round_trip(self, processes: Processes) -> None:
        """Within the fleet's window as last seen, the same or a lower level folds with no store call."""
        paging, _, _ = processes.make("p1")
        fleet, store, clock = processes.make("p2")
        assert paging.first(ERROR) is Decision.PAGE
        assert fleet.first(ERROR) is Decision.FOLD
        calls = len(store.calls)
        assert [fleet.first(level) for level in (ERROR, WARNING, ERROR, 10)] == [Decision.FOLD] * 4
        assert paging.first(ERROR) is Decision.FOLD, "the pager's own repeats fold too"
        assert len(store.calls) == calls, "no round trip"
        clock.advance(WINDOW)  # our estimate ended: the next decision asks the store again
        fleet.first(ERROR)
        assert len(store.calls) == calls + 1

    def test_a_higher_level_escalates_once_for_the_fleet(self, processes: Processes) -> None:
        """A CRITICAL during an ERROR window pages once; the other processes fold their CRITICALs."""
        fleets = [processes.make(f"p{n}")[0] for n in range(3)]
        assert fleets[0].first(ERROR) is Decision.PAGE
        assert fleets[1].first(ERROR) is Decision.FOLD
        assert [fleet.first(CRITICAL) for fleet in fleets[1:]] == [Decision.PAGE, Decision.FOLD]
        assert fleets[0].first(CRITICAL) is Decision.FOLD


class TestCounts:
    def test_claimed_counts_add_up_exactly(self, processes: Processes) -> None:
        """Counts handed by three processes on two hosts reach one digest, summed per kind, once."""
        fleets = [processes.make(f"p{n}", host=f"h{n % 2}")[0] for n in range(3)]
        fleets[0].first(ERROR)
        handed = 0
        for n, fleet in enumerate(fleets):
            for count in (n + 1, 10 * (n + 1)):
                assert fleet.hand("kind-a", ERROR, count, sample(), T0 + n, T0 + n + 1)
                handed += count
            assert fleet.hand("kind-b", WARNING, 1, sample("cache miss", WARNING), T0, T0)
            handed += 1
            assert fleet.sync(force=True) is None, "the window has not ended"
        claim = claim_all(fleets)
        assert claim.total == handed == 69
        assert {kind.kind: kind.count for kind in claim.kinds} == {"kind-a": 66, "kind-b": 3}
        assert (claim.processes, claim.hosts) == (3, 2)
        assert all(fleet.sync(force=True) is None for fleet in fleets), "each count is claimed once"

    def test_hand_merges_per_kind_and_pushes_once_per_interval(self, on_sqlite: Processes) -> None:
        """A thousand alerts of two kinds are two rows of one push, sent at most once per sync_interval."""
        fleet, store, clock = on_sqlite.make("p1", sync_interval=1.0)
        fleet.sync()
        store.calls.clear()
        for n in range(1000):
            fleet.hand("a" if n % 2 else "b", ERROR, 1, sample(), T0 + n, T0 + n)
        assert fleet.unsent == 1000
        clock.advance(0.5)
        assert fleet.sync() is None and store.calls == [], "not before the interval"
        clock.advance(0.5)
        fleet.sync()
        assert store.calls[0] == "add" and fleet.unsent == 0
        assert fleet.status()["waiting"] == 1000 and fleet.status()["kinds"] == 2

    def test_the_claimer_sees_its_window_rearmed(self, on_sqlite: Processes) -> None:
        """After a claim the fleet's window is open again: new kinds of its level fold, no round trip."""
        fleet, store, _ = on_sqlite.make("p1")
        fleet.first(ERROR)
        fleet.hand("k", ERROR, 5, sample(), T0, T0)
        assert claim_all([fleet]).total == 5
        calls = len(store.calls)
        assert fleet.first(ERROR) is Decision.FOLD and len(store.calls) == calls


class TestExit:
    def test_the_last_process_claims_what_is_pending_now(self, processes: Processes) -> None:
        """The first to leave hands its counts over; the last one claims everything before the window ends."""
        (one, _, _), (two, _, _) = processes.make("p1", window=60.0), processes.make("p2", window=60.0)
        assert one.sync(force=True) is None and two.sync(force=True) is None  # both heartbeat
        one.first(ERROR)
        one.hand("k", ERROR, 7, sample(), T0, T0)
        two.hand("k", ERROR, 3, sample(), T0, T0)
        assert one.leave() == 1
        assert two.leave() == 0
        claim = two.final_claim()
        assert claim is not None and claim.total == 10 and claim.processes == 2
        two.ack(claim)
        assert two.final_claim() is None

    def test_a_dead_claimers_digest_goes_out_after_the_lease(self, processes: Processes) -> None:
        """At least once: a claim never acknowledged is re-offered to another process; the first lost it."""
        (one, _, _), (two, _, _) = processes.make("p1"), processes.make("p2")
        one.hand("k", ERROR, 4, sample(), T0, T0)
        first = claim_all([one])
        again = claim_all([two], timeout=LEASE + 2)
        assert again.reoffered and again.total == first.total == 4
        assert not one.renew(first), "the lease went to another process"
        assert two.renew(again)
        two.ack(again)


class TestBudgetAndCircuit:
    def test_one_budget_for_the_fleet(self, processes: Processes) -> None:
        """Two pages a minute for the whole fleet, whichever processes spend them."""
        fleets = [processes.make(f"p{n}", buckets=[(2, 60)])[0] for n in range(3)]
        waits = [fleet.spend() for fleet in fleets]
        assert waits[:2] == [0.0, 0.0]
        assert waits[2] is not None and 29 < waits[2] <= 30
        fleets[2].hold()
        fleets[0].hand("k", ERROR, 1, sample(), T0, T0)
        claim = claim_all(fleets[:1])
        assert claim.held_since is not None

    def test_a_pause_seen_by_one_pauses_all(self, processes: Processes) -> None:
        """An auth failure pauses every process (the key is tried once by the fleet); resume ends it."""
        (one, _, _), (two, _, clock) = processes.make("p1"), processes.make("p2")
        assert two.paused() is None
        one.pause(None, "SMN.0001 auth")
        assert two.paused() is None, "read at most once per sync_interval"
        clock.advance(1.0)
        left, reason = two.paused() or (0.0, "")
        assert 59 < left <= 60 and reason == "SMN.0001 auth"
        assert one.paused() == (60.0, "SMN.0001 auth"), "the pausing process knows at once"
        one.resume()
        clock.advance(1.0)
        assert two.paused() is None


class Outage:
    """Makes a store unusable and usable again: a Redis server stopped and restarted (same port, no keys), or
    a SQLite file replaced by a directory (the connection is reopened and fails) and then removed."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.server: Optional[RedisServer] = None
        if kind == "redis":
            self.server = RedisServer(tmp_path, password="pw-Secret-123").start()
            self.url = self.server.url
        else:
            self.path = tmp_path / "state.db"
            self.url = f"sqlite://{self.path}"

    def begin(self) -> None:
        if self.server is not None:
            self.server.stop()
            return
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.path.mkdir()

    def end(self) -> None:
        if self.server is not None:
            self.server.start()
        else:
            shutil.rmtree(self.path)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    made = Outage(request.param, tmp_path)
    yield made
    made.close()


def probe_times(fleet: Fleet, store: Counting, clock: FakeClock, seconds: float) -> list[float]:
    """Call ``sync`` every 0.5 s of fleet time for ``seconds``; return when it touched the store."""
    touched = []
    for _ in range(int(seconds / 0.5)):
        clock.advance(0.5)
        before = len(store.calls)
        fleet.sync()
        if len(store.calls) > before:
            touched.append(clock.now)
    return touched


class TestStoreFailure:
    def test_a_dead_store_means_local_at_once(self, outage: Outage, target: str) -> None:
        """The first decision against a dead store is LOCAL within a bounded time, said once, no secret."""
        made = Processes(outage.url, target)
        outage.begin()
        fleet, store, _ = made.make("p1")
        started = time.monotonic()
        assert fleet.first(ERROR) is Decision.LOCAL
        assert time.monotonic() - started < 0.6
        assert fleet.degraded and made.said["p1"].keys() == ["shared-state-down"]
        assert fleet.first(CRITICAL) is Decision.LOCAL and store.calls == ["observe"], "no more round trips"
        assert "pw-Secret-123" not in repr(made.said["p1"].lines) + repr(fleet)
        assert store.url in made.said["p1"].lines[0][1]
        made.close()

    def test_outage_gives_counts_back_backs_off_and_merges_on_recovery(
        self, outage: Outage, target: str
    ) -> None:
        """Degraded: counts handed back, LOCAL answers, re-probes 1 s doubling to 60 s; recovered: said once,
        the caller's local counts merged (added, never observed: no first page replayed) and claimed."""
        made = Processes(outage.url, target)
        fleet, store, clock = made.make("p1")
        assert fleet.first(ERROR) is Decision.PAGE
        fleet.hand("k", ERROR, 5, sample(), T0, T0 + 1)
        outage.begin()
        assert fleet.sync(force=True) is None
        assert fleet.degraded and made.said["p1"].keys() == ["shared-state-down"]
        taken = fleet.take_back()
        assert [(d.kind, d.count) for d in taken] == [("k", 5)] and fleet.unsent == 0
        calls = len(store.calls)
        assert fleet.first(ERROR) is Decision.LOCAL
        assert not fleet.hand("k", ERROR, 1, sample(), T0, T0), "the caller keeps counting while degraded"
        assert (fleet.spend(), fleet.paused(), fleet.final_claim()) == (None, None, None)
        assert len(store.calls) == calls, "degraded answers cost no round trip"
        probes = probe_times(fleet, store, clock, 200)
        gaps = [round(b - a, 1) for a, b in zip(probes, probes[1:])]
        assert probes[0] - 1000.0 <= FIRST_PROBE + 0.5
        assert gaps == [2.0, 4.0, 8.0, 16.0, 32.0, LAST_PROBE, LAST_PROBE][: len(gaps)] and len(gaps) >= 6
        assert made.said["p1"].keys() == ["shared-state-down"], "said once per outage"
        outage.end()
        probe_times(fleet, store, clock, LAST_PROBE + 1)
        assert not fleet.degraded
        assert made.said["p1"].keys() == ["shared-state-down", "shared-state-back"]
        recovered = len(store.calls)
        local = KindDelta("k", ERROR, 12, sample(), T0, T0 + 30)  # what the local pager counted meanwhile
        assert fleet.merge([*taken, local])
        claim = claim_all([fleet])
        assert claim.total == 17
        assert "observe" not in store.calls[recovered:], "no first page replayed"
        assert "pw-Secret-123" not in repr(made.said["p1"].lines)
        made.close()


class TestRoundTrips:
    def per_second(self, store: Counting, seconds: float) -> float:
        return len(store.calls) / seconds

    def test_at_most_two_a_second_in_an_incident(self, processes: Processes) -> None:
        """Alerts every 10 ms of fleet time for 60 s: counts and heartbeats go together, then one claim."""
        fleet, store, clock = processes.make("p1", window=300.0)
        other, _, _ = processes.make("p2", window=300.0)
        other.first(ERROR)  # another process paged: this one folds
        assert fleet.first(ERROR) is Decision.FOLD
        store.calls.clear()
        for step in range(6000):
            clock.advance(0.01)
            fleet.first(ERROR)  # a kind new to the caller, within the fleet's window: no round trip
            fleet.hand(f"k{step % 7}", ERROR, 1, sample(), T0, T0)
            fleet.sync()
        assert self.per_second(store, 60) <= 2.0
        assert set(store.calls) == {"add", "claim"}, "the heartbeat rides on the counts"
        assert fleet.status()["waiting"] + fleet.unsent == 6000

    def test_idle_costs_a_heartbeat_and_a_claim_every_few_seconds(self, processes: Processes) -> None:
        """With nothing going on, a process only says it lives (and picks up a dead sibling's digest)."""
        fleet, store, clock = processes.make("p1", heartbeat_every=5.0)
        for _ in range(600):
            clock.advance(0.1)
            fleet.sync()
        assert self.per_second(store, 60) <= 0.4
        assert set(store.calls) == {"heartbeat", "claim"}
        assert fleet.status()["processes"] == 1

    def test_heartbeat_lives_a_few_intervals(self, on_sqlite: Processes) -> None:
        """A process is live for HEARTBEAT_LIVES heartbeat intervals after its last beat (store time)."""
        fleet, _, _ = on_sqlite.make("p1", heartbeat_every=0.1)
        fleet.sync()
        assert fleet.status()["processes"] == 1
        time.sleep(0.1 * HEARTBEAT_LIVES + 0.05)
        assert fleet.status()["processes"] == 0


class TestFork:
    def test_a_forked_child_is_a_new_process_that_starts_afresh(
        self, on_sqlite: Processes, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A child gets a new id and none of the parent's unsent counts (the parent sends those)."""
        parent_store = open_store(on_sqlite.url)
        assert parent_store is not None
        fleet = Fleet(parent_store, on_sqlite.target, window=WINDOW, lease=LEASE, buckets=BUCKETS,
                      circuit_cooldown=60, host="h1", clock=FakeClock())  # fmt: skip
        parent = fleet.process
        assert re.fullmatch(rf"h1:{os.getpid()}:[0-9a-f]{{8}}", parent)
        fleet.hand("k", ERROR, 3, sample(), T0, T0)
        monkeypatch.setattr(os, "getpid", lambda: 4242)
        assert re.fullmatch(r"h1:4242:[0-9a-f]{8}", fleet.process)
        assert fleet.unsent == 0 and fleet.take_back() == []
        parent_store.close()

    def test_a_given_process_id_is_kept(self, on_sqlite: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
        fleet, _, _ = on_sqlite.make("worker-1")
        monkeypatch.setattr(os, "getpid", lambda: 4242)
        assert fleet.process == "worker-1"


class TestIds:
    def test_target_key_is_stable_and_says_who_is_paged(self) -> None:
        """Same people, same key (numbers in any order); any difference in whom or how: another key."""
        endpoint = "https://smn.cn-north-4.myhuaweicloud.com"
        key = target_key(numbers=["+8613800000001", "+8613900000002"], endpoint=endpoint, prefix="svc")
        assert key == target_key(
            numbers=[" +8613900000002", "+8613800000001"], endpoint=endpoint + "/", prefix="svc"
        )
        assert re.fullmatch(f"[0-9a-f]{{{ID_CHARS}}}", key)
        others = {
            target_key(numbers=["+8613800000001"], endpoint=endpoint, prefix="svc"),
            target_key(topic_urn="urn:smn:cn-north-4:p:oncall", endpoint=endpoint, prefix="svc"),
            target_key(numbers=["+8613800000001", "+8613900000002"], endpoint="https://x", prefix="svc"),
            target_key(numbers=["+8613800000001", "+8613900000002"], endpoint=endpoint, prefix="api"),
        }
        assert len(others) == 4 and key not in others
        assert "13800000001" not in key

    def test_kind_id_hashes_the_fingerprint(self) -> None:
        alert = Alert(ERROR, "ERROR", "app.db", "login %s", "login bob", "KeyError", "x", "db.py:1 in f")
        assert kind_id(alert.fingerprint) == kind_id(alert._replace(message="login eve").fingerprint)
        assert kind_id(alert.fingerprint) != kind_id(alert._replace(levelno=CRITICAL).fingerprint)
        assert "login" not in kind_id(alert.fingerprint) and len(kind_id(alert.fingerprint)) == ID_CHARS


class TestSamples:
    def test_round_trip_of_what_a_page_shows(self) -> None:
        alert = Alert(ERROR, "ERROR", "app.db", "t %s", "数据库超时 after 30s", "socket.TimeoutError",
                      "timed out", "db.py:42 in query", T0)  # fmt: skip
        decoded = decode_sample(encode_sample(alert))
        assert decoded is not None
        assert decoded._replace(template="") == alert._replace(template="")

    def test_secrets_are_redacted_before_they_are_stored(self) -> None:
        alert = Alert(ERROR, "ERROR", "app", "t", "login password=hunter2 failed", "E", "token=abc123def456")
        text = encode_sample(alert)
        assert "hunter2" not in text and "abc123def456" not in text and "password=***" in text

    @pytest.mark.parametrize(
        "message", ["x" * 5000, "数" * 5000, "\x00" * 5000, '"\\' * 3000, "\ud83d" * 900 + "é" * 900]
    )
    def test_any_text_fits_the_store(self, message: str) -> None:
        """Huge, wide, escaped or unencodable text still makes a sample within MAX_SAMPLE_CHARS, as UTF-8."""
        alert = Alert(ERROR, message[:50], message, "t", message, message, message, message, float("nan"))
        text = encode_sample(alert)
        assert len(text) <= MAX_SAMPLE_CHARS
        text.encode("utf-8")
        decoded = decode_sample(text)
        assert decoded is not None and decoded.levelno == ERROR and len(decoded.message) >= 20

    @pytest.mark.parametrize("text", ["", "{", "[1, 2]", '["x", 1, 2, 3, 4, 5, 6, 7]', "null"])
    def test_unreadable_sample_is_none(self, text: str) -> None:
        assert decode_sample(text) is None


class TestComposeClaim:
    def claim(
        self, *kinds: KindCount, processes: int = 12, hosts: int = 3, held: Optional[float] = None
    ) -> Claim:
        return Claim("c1", kinds, processes, hosts, held, T0)

    def test_the_digest_says_how_many_processes_and_hosts(self) -> None:
        """The issue's example: one kind from 12 processes on 3 hosts."""
        claim = self.claim(KindCount("k", ERROR, 2160, sample("db timeout"), T0, T0 + 40))
        text = compose_claim(claim, PageContext(prefix="svc"))
        assert text == "svc ERROR x2,160 in 40 s from 12 processes on 3 hosts: app.db: db timeout"
        one_host = compose_claim(self.claim(*claim.kinds, processes=3, hosts=1), PageContext())
        assert one_host.startswith("ERROR x2,160 in 40 s from 3 processes: ")

    def test_one_process_reads_as_a_local_digest(self) -> None:
        claim = self.claim(KindCount("k", ERROR, 9, sample(), T0, T0 + 60), processes=1, hosts=1)
        assert compose_claim(claim, PageContext()) == "ERROR x9 in 1 min: app.db: db timeout"

    def test_counts_add_up_with_other_kinds_and_missing_samples(self) -> None:
        """Every count on the page adds up to claim.total: kinds, "other kinds" (merged), a lost sample."""
        claim = self.claim(
            KindCount("a", ERROR, 700, sample("a " * 100), T0, T0 + 5),
            KindCount("b", CRITICAL, 3, "", T0, T0 + 1),
            KindCount(OTHER_KINDS, CRITICAL, 40, "", T0, T0 + 9, merged=4),
            KindCount(OTHER_KINDS, ERROR, 5000, "", T0, T0 + 9, merged=180),
        )
        groups = claim_groups(claim)
        assert sum(group.count for group in groups) == claim.total == 5743
        assert groups[2].alert.message == "alerts of 4 other kinds" and groups[2].alert.levelno == CRITICAL
        assert groups[1].alert.message == "alerts whose text was not kept"
        text = compose_claim(claim, PageContext(max_length=160))
        shown = sum(int(n.replace(",", "")) for n in re.findall(r"(?:^|\n)(?:\w+ x|\+)([\d,]+)", text))
        assert shown == claim.total, text

    def test_a_held_claim_says_since_when(self) -> None:
        since = time.mktime((2024, 5, 1, 14, 5, 0, 0, 0, -1))
        claim = self.claim(KindCount("k", ERROR, 4, sample(), T0, T0), processes=2, hosts=1, held=since)
        assert compose_claim(claim, PageContext()).endswith("\n4 of these held back since 14:05 (SMS budget)")
