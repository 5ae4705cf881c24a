"""The shared store (issue 11): URL parsing, and each operation's rules on a real SQLite file and real Redis.

Each semantic test runs on both backends (``store`` is parametrized) and must behave the same. Windows and
leases are a fraction of a second: where the behaviour is "after the window ends", the test waits for it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
import redis

import smn_alert
from smn_alert import _store_sqlite
from smn_alert._store import (
    OTHER_KINDS,
    KindCount,
    KindDelta,
    Store,
    StoreUnavailable,
    mask_url,
    merge_kinds,
    open_store,
)
from smn_alert._store_redis import RedisStore, key_names
from smn_alert._store_sqlite import SQLiteStore
from smn_alert.errors import SMNConfigError
from tests.redis_server import RedisServer

WINDOW = 0.2
LEASE = 0.2
ERROR, CRITICAL = 40, 50


def delta(
    kind: str = "k1", count: int = 1, level: int = ERROR, sample: str = "", at: float = 100.0
) -> KindDelta:
    """One kind's folded count, seen at ``at`` (wall time: only data for the store)."""
    return KindDelta(kind, level, count, sample, at, at)


def pass_time(seconds: float) -> None:
    """Let ``seconds`` of store time pass: the behaviour under test is what happens after it."""
    time.sleep(seconds + 0.02)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store on a fresh SQLite file, or on the module's Redis server (each test has its own target)."""
    url = (
        f"sqlite://{tmp_path}/state.db"
        if request.param == "sqlite"
        else request.getfixturevalue("redis_server").url
    )
    opened = open_store(url)
    assert opened is not None
    yield opened
    opened.close()


@pytest.fixture
def target() -> str:
    return uuid.uuid4().hex[:24]


@pytest.fixture
def make_store() -> Iterator[Callable[[str | None], Store]]:
    """Open stores that are closed after the test (an unclosed connection is a ResourceWarning)."""
    made: list[Store] = []

    def make(url: str | None) -> Store:
        store = open_store(url)
        assert store is not None
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


class TestOpenStore:
    def test_process_shares_nothing(self) -> None:
        """``process`` keeps today's per-process behaviour: no store at all."""
        assert open_store("process") is None
        assert open_store(" process\n") is None

    def test_default_is_a_file_in_a_private_directory_of_this_user(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        target: str,
        make_store: Callable[[str | None], Store],
    ) -> None:
        """No setting: one SQLite file per user and host, its directory created 0700 on first use."""
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        store = make_store(None)
        assert isinstance(store, SQLiteStore)
        folder = tmp_path / f"smn_alert-{os.geteuid()}"
        assert store.path == str(folder / "shared-state.db")
        assert not folder.exists(), "nothing is touched before the first operation"
        assert store.observe(target, level=ERROR, window=WINDOW)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert make_store("").observe(target, level=ERROR, window=WINDOW) is False

    def test_sqlite_url_names_an_absolute_file(self, tmp_path: Path) -> None:
        """``sqlite:///abs/path.db`` is used as given."""
        store = open_store(f"sqlite://{tmp_path}/a/../state.db")
        assert isinstance(store, SQLiteStore)
        assert store.path == str(tmp_path / "state.db")

    @pytest.mark.parametrize(
        "url",
        [
            "sqlite://state.db",
            "sqlite:state.db",
            "sqlite:///tmp/dir/",
            "sqlite:///tmp/x.db?mode=ro",
            "memcached://h",
        ],
    )
    def test_bad_urls_name_the_setting(self, url: str) -> None:
        """A URL that names no usable store is refused at construction, naming ``shared_state``."""
        with pytest.raises(SMNConfigError, match="shared_state"):
            open_store(url)

    @pytest.mark.parametrize(
        "url",
        ["redis://localhost:6379/0", "redis://h", "rediss://user:pw@h:6380/2?ssl_cert_reqs=required",
         "unix:///run/redis.sock?db=3", "redis://h:1/0?password=pw&db=1"],
    )  # fmt: skip
    def test_redis_urls_are_accepted_without_connecting(self, url: str) -> None:
        """Redis URLs build a store; nothing connects until the first operation."""
        assert isinstance(open_store(url), RedisStore)

    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("redis://:s3cret@h:port/0", "not a valid URL"),
            ("redis://:s3/cret@h:1/0", "not a valid URL"),
            ("redis://:s3cret@/0", "needs a host"),
            ("redis://:s3cret@h:6379/zero", "must be a number"),
            ("redis://:s3cret@h/0?socket_timeout=10", "socket_timeout"),
            ("redis://:s3cret@h/0?retry_on_timeout=yes", "retry_on_timeout"),
            ("redis://:s3cret@h/0?db=1&db=2", "twice"),
            ("unix://:s3cret@", "socket's path"),
        ],
    )
    def test_bad_redis_urls_are_refused_without_the_password(self, url: str, why: str) -> None:
        """A bad Redis URL, or one that would undo the pinned timeouts, is refused; the password is masked."""
        with pytest.raises(SMNConfigError, match="shared_state") as caught:
            open_store(url)
        assert why in str(caught.value)
        assert "cret" not in str(caught.value) and "cret" not in repr(caught.value)

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("redis://user:pa%2Fss@h:1/0", "redis://user:***@h:1/0"),
            ("redis://:pa%2Fss%40word@h:1/0", "redis://:***@h:1/0"),
            ("redis://lonely@h/0", "redis://***@h/0"),
            ("unix:///s.sock?db=1&password=pw", "unix:///s.sock?db=1&password=***"),
            ("rediss://h:6380/0", "rediss://h:6380/0"),
        ],
    )
    def test_repr_masks_the_password(self, url: str, shown: str) -> None:
        """The URL shown in repr and diagnostics has no password, however it was spelled."""
        assert mask_url(url) == shown
        assert mask_url(url.replace("%2F", "/").replace("%40", "@")) == shown, "even unescaped"
        assert repr(open_store(url)) == f"RedisStore({shown!r})"

    def test_missing_redis_package_says_how_to_install_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without redis-py a Redis URL is a configuration error naming the extra to install."""
        monkeypatch.setitem(sys.modules, "redis", None)  # type: ignore[arg-type]
        monkeypatch.delitem(sys.modules, "smn_alert._store_redis")
        monkeypatch.delattr(smn_alert, "_store_redis")
        with pytest.raises(SMNConfigError, match=r'pip install "smn-alert\[redis\]"'):
            open_store("redis://:pw@h/0")

    def test_redis_is_imported_only_for_a_redis_url(self, tmp_path: Path) -> None:
        """Importing smn_alert and using SQLite never imports redis-py (it is an optional extra)."""
        code = f"""
            import sys, smn_alert
            from smn_alert._store import open_store
            open_store("sqlite://{tmp_path}/s.db").close()
            assert "redis" not in sys.modules, "redis imported"
            open_store("redis://h/0")
            assert "redis" in sys.modules
        """
        subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=30)


class TestPrivateDirectory:
    @pytest.fixture
    def folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        return tmp_path / f"smn_alert-{os.geteuid()}"

    def refusal(self, target: str) -> str:
        store = open_store(None)
        assert store is not None
        with pytest.raises(StoreUnavailable) as caught:
            store.observe(target, level=ERROR, window=WINDOW)
        return str(caught.value)

    def test_symlink_is_refused(self, folder: Path, tmp_path: Path, target: str) -> None:
        """A directory reached through a symlink (someone could redirect it) is refused."""
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
        assert "is a symbolic link" in self.refusal(target)

    def test_shared_directory_is_refused(self, folder: Path, target: str) -> None:
        """A directory with group or other permissions is refused."""
        folder.mkdir()
        folder.chmod(0o755)
        assert "open to group or others (mode 755" in self.refusal(target)

    @pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
    def test_someone_elses_directory_is_refused(self, folder: Path, target: str) -> None:
        """A directory owned by another user is refused."""
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
        assert "belongs to uid 65534" in self.refusal(target)

    def test_read_only_file_system_is_unavailable(
        self, folder: Path, target: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A directory that cannot be created (read-only file system) is StoreUnavailable, saying why."""

        def read_only(path: str, mode: int = 0o777) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

        monkeypatch.setattr(_store_sqlite.os, "mkdir", read_only)
        assert "Read-only file system" in self.refusal(target)

    def test_a_file_that_is_no_database_is_unavailable(
        self, tmp_path: Path, target: str, make_store: Callable[[str | None], Store]
    ) -> None:
        """A corrupt or foreign file fails as StoreUnavailable (the caller pages per process)."""
        (tmp_path / "x.db").write_bytes(b"not a database" * 100)
        with pytest.raises(StoreUnavailable, match="not a database"):
            make_store(f"sqlite://{tmp_path}/x.db").observe(target, level=ERROR, window=WINDOW)

    def test_a_removed_file_is_opened_again(
        self, tmp_path: Path, target: str, make_store: Callable[[str | None], Store]
    ) -> None:
        """A /tmp cleaner removing the file: the process reopens it and keeps sharing with new processes."""
        store = make_store(f"sqlite://{tmp_path}/s.db")
        assert store.observe(target, level=ERROR, window=60)
        for path in tmp_path.glob("s.db*"):
            path.unlink()
        assert store.observe(target, level=ERROR, window=60), "the state went with the file"
        assert not make_store(f"sqlite://{tmp_path}/s.db").observe(target, level=ERROR, window=60)

    def test_busy_database_fails_fast(
        self, tmp_path: Path, target: str, make_store: Callable[[str | None], Store]
    ) -> None:
        """Another process holding the write lock makes an operation fail after the busy timeout, not hang."""
        store = make_store(f"sqlite://{tmp_path}/s.db")
        store.observe(target, level=ERROR, window=WINDOW)
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            store.observe(target, level=CRITICAL, window=WINDOW)
        assert time.monotonic() - started < _store_sqlite.SQLITE_BUSY_TIMEOUT + 0.3
        other.rollback()
        assert store.observe(target, level=CRITICAL, window=WINDOW)
        other.close()


class TestObserve:
    def test_first_alert_pages_and_the_rest_fold(self, store: Store, target: str) -> None:
        """One page opens a window; alerts of the same or a lower level fold into it."""
        assert store.observe(target, level=ERROR, window=WINDOW)
        assert not store.observe(target, level=ERROR, window=WINDOW)
        assert not store.observe(target, level=30, window=WINDOW)
        assert store.observe(uuid.uuid4().hex, level=ERROR, window=WINDOW), "targets are independent"

    def test_higher_level_escalates(self, store: Store, target: str) -> None:
        """An alert above the window's level pages at once and raises the window's level."""
        assert store.observe(target, level=ERROR, window=WINDOW)
        assert store.observe(target, level=CRITICAL, window=WINDOW)
        assert not store.observe(target, level=CRITICAL, window=WINDOW)
        assert not store.observe(target, level=ERROR, window=WINDOW)

    def test_window_that_ends_with_nothing_counted_is_quiet(self, store: Store, target: str) -> None:
        """After a window with nothing folded, the next alert pages at once."""
        assert store.observe(target, level=ERROR, window=WINDOW)
        pass_time(WINDOW)
        assert store.observe(target, level=ERROR, window=WINDOW)

    def test_window_that_ends_with_counts_is_due_not_quiet(self, store: Store, target: str) -> None:
        """Counts waiting for their digest keep folding (the claim sends them); a CRITICAL still pages."""
        store.observe(target, level=ERROR, window=WINDOW)
        store.add(target, [delta()], process="p1", host="h1")
        pass_time(WINDOW)
        assert not store.observe(target, level=ERROR, window=WINDOW)
        assert store.observe(target, level=CRITICAL, window=WINDOW)

    def test_unacknowledged_digest_keeps_the_target_busy(self, store: Store, target: str) -> None:
        """While a claimed digest is not acknowledged, alerts fold; after the ack the target is quiet."""
        store.observe(target, level=ERROR, window=WINDOW)
        store.add(target, [delta()], process="p1", host="h1")
        pass_time(WINDOW)
        claim = store.claim(target, window=WINDOW, lease=10)
        assert claim is not None
        pass_time(WINDOW)
        assert not store.observe(target, level=ERROR, window=WINDOW)
        assert store.claim(target, window=WINDOW, lease=10) is None
        store.ack(target, claim.claim_id)
        assert store.observe(target, level=ERROR, window=WINDOW)


class TestAddAndClaim:
    def test_digest_counts_every_process(self, store: Store, target: str) -> None:
        """Counts from several processes merge per kind: sums, highest level, first sample, widest times."""
        store.observe(target, level=ERROR, window=WINDOW)
        store.add(target, [delta("a", 3, sample="", at=10.0)], process="p1", host="h1")
        store.add(
            target,
            [delta("a", 4, CRITICAL, '数据库超时 a/text "q"', 5.0), delta("b", 1, at=7.5)],
            process="p2",
            host="h1",
        )
        store.add(target, [delta("a", 2, sample="later text", at=20.0)], process="p3", host="h2")
        assert store.claim(target, window=WINDOW, lease=LEASE) is None, "the window has not ended"
        pass_time(WINDOW)
        claim = store.claim(target, window=WINDOW, lease=LEASE)
        assert claim is not None
        assert claim.kinds == (
            KindCount("a", CRITICAL, 9, '数据库超时 a/text "q"', 5.0, 20.0),
            KindCount("b", ERROR, 1, "", 7.5, 7.5),
        )
        assert (claim.total, claim.processes, claim.hosts, claim.reoffered) == (10, 3, 2, False)

    def test_counts_are_claimed_once_and_then_the_target_goes_quiet(self, store: Store, target: str) -> None:
        """A claim resets what it read and re-arms the window; a window with nothing new ends quiet."""
        store.observe(target, level=ERROR, window=WINDOW)
        store.add(target, [delta(count=5)], process="p1", host="h1")
        pass_time(WINDOW)
        first = store.claim(target, window=WINDOW, lease=LEASE)
        assert first is not None and first.total == 5
        store.ack(target, first.claim_id)
        assert store.claim(target, window=WINDOW, lease=LEASE) is None
        assert not store.observe(target, level=ERROR, window=WINDOW), "the digest re-armed the window"
        pass_time(WINDOW)
        assert store.claim(target, window=WINDOW, lease=LEASE) is None
        assert store.status(target)["window"] is None
        assert store.observe(target, level=ERROR, window=WINDOW)

    def test_counts_without_a_window_are_still_claimed(self, store: Store, target: str) -> None:
        """Counts that arrive when no window is open (late, or merged after an outage) are not lost."""
        store.add(target, [delta(count=7)], process="p1", host="h1")
        claim = store.claim(target, window=WINDOW, lease=LEASE)
        assert claim is not None and claim.total == 7

    def test_counts_of_a_very_short_window_wait_for_their_claim(self, store: Store, target: str) -> None:
        """Counts are kept at least MIN_KEEP past their window's end, however short the window."""
        store.observe(target, level=ERROR, window=0.001)
        store.add(target, [delta(count=4)], process="p1", host="h1")
        pass_time(0.05)
        claim = store.claim(target, window=0.001, lease=LEASE)
        assert claim is not None and claim.total == 4

    def test_claim_rearms_the_window_at_the_level_it_claimed(self, store: Store, target: str) -> None:
        """After an ERROR digest, a CRITICAL pages at once even if the old window was CRITICAL."""
        store.observe(target, level=CRITICAL, window=WINDOW)
        store.add(target, [delta(level=ERROR)], process="p1", host="h1")
        pass_time(WINDOW)
        assert store.claim(target, window=WINDOW, lease=LEASE) is not None
        assert not store.observe(target, level=ERROR, window=WINDOW)
        assert store.observe(target, level=CRITICAL, window=WINDOW)

    def test_kinds_beyond_the_limit_are_merged_per_level_band(self, store: Store, target: str) -> None:
        """Beyond max_kinds the smallest counts become "other kinds", a CRITICAL one apart from the rest."""
        kinds = [delta(f"k{n}", count, level, f"text {n}", float(n)) for n, (count, level) in enumerate(
            [(9, ERROR), (8, ERROR), (5, CRITICAL), (4, ERROR), (4, 45), (3, CRITICAL), (1, 30)]
        )]  # fmt: skip
        store.add(target, kinds, process="p1", host="h1")
        claim = store.claim(target, window=WINDOW, lease=LEASE, max_kinds=2)
        assert claim is not None
        assert [kind.kind for kind in claim.kinds] == ["k0", "k1", OTHER_KINDS, OTHER_KINDS]
        assert claim.kinds[2:] == (
            KindCount(OTHER_KINDS, CRITICAL, 8, "", 2.0, 5.0, merged=2),
            KindCount(OTHER_KINDS, 45, 9, "", 3.0, 6.0, merged=3),
        )
        assert claim.total == 34

    def test_ties_are_broken_the_same_way_everywhere(self, store: Store, target: str) -> None:
        """Equal counts are ordered by kind id in byte order (not the server's locale) on every backend."""
        store.add(target, [delta(kind) for kind in ("b", "é", "a", "B")], process="p1", host="h1")
        claim = store.claim(target, window=WINDOW, lease=LEASE, max_kinds=3)
        assert claim is not None
        assert [kind.kind for kind in claim.kinds] == ["B", "a", "b", OTHER_KINDS]
        assert [kind.kind for kind in merge_kinds(claim.kinds[:3], 2)] == ["B", "a", OTHER_KINDS]

    def test_sample_is_the_first_one_of_each_window(self, store: Store, target: str) -> None:
        """A kind keeps the sample it got first in a window; the next window takes a new one."""
        store.add(target, [delta(sample="one")], process="p1", host="h1")
        store.add(target, [delta(sample="two")], process="p2", host="h1")
        first = store.claim(target, window=WINDOW, lease=LEASE)
        assert first is not None
        store.ack(target, first.claim_id)
        store.add(target, [delta(sample="three")], process="p2", host="h1")
        pass_time(WINDOW)
        second = store.claim(target, window=WINDOW, lease=LEASE)
        assert second is not None
        assert (first.kinds[0].sample, second.kinds[0].sample) == ("one", "three")
        assert second.processes == 1

    def test_window_started_is_when_the_folding_began(self, store: Store, target: str) -> None:
        """The claim says when its window opened, on the store's clock."""
        before = time.time()
        store.observe(target, level=ERROR, window=WINDOW)
        store.add(target, [delta()], process="p1", host="h1")
        pass_time(WINDOW)
        claim = store.claim(target, window=WINDOW, lease=LEASE)
        assert claim is not None
        assert before - 0.05 <= claim.window_started <= before + 0.1

    def test_nothing_to_add_costs_nothing(self, store: Store, target: str) -> None:
        """An empty batch is no operation at all."""
        store.add(target, [], process="p1", host="h1")
        assert store.status(target)["kinds"] == 0


class TestForcedClaim:
    def test_force_takes_the_counts_of_an_open_window(self, store: Store, target: str) -> None:
        """A flush or the last process leaving claims what is pending now, without waiting for the window."""
        store.observe(target, level=ERROR, window=60)
        store.add(target, [delta(count=6)], process="p1", host="h1")
        assert store.claim(target, window=60, lease=LEASE) is None, "without force the window must end"
        claim = store.claim(target, window=60, lease=LEASE, force=True)
        assert claim is not None and claim.total == 6 and not claim.reoffered
        assert store.claim(target, window=60, lease=LEASE, force=True) is None, "each count is claimed once"
        assert not store.observe(target, level=ERROR, window=60), "the window stays open: the rest folds"

    def test_force_with_nothing_pending_keeps_an_open_window(self, store: Store, target: str) -> None:
        """Nothing counted: a forced claim returns None and keeps the open window (the spell is not quiet)."""
        store.observe(target, level=ERROR, window=60)
        assert store.claim(target, window=60, lease=LEASE, force=True) is None
        assert store.status(target)["window"] is not None
        assert not store.observe(target, level=ERROR, window=60)

    def test_force_still_reoffers_an_expired_lease_first(self, store: Store, target: str) -> None:
        """At least once: a dead claimer's digest goes out before the newer counts."""
        store.add(target, [delta(count=2)], process="p1", host="h1")
        assert store.claim(target, window=60, lease=LEASE) is not None
        store.add(target, [delta(count=5)], process="p1", host="h1")
        pass_time(LEASE)
        again = store.claim(target, window=60, lease=LEASE, force=True)
        assert again is not None and again.reoffered and again.total == 2
        later = store.claim(target, window=60, lease=LEASE, force=True)
        assert later is not None and not later.reoffered and later.total == 5


class TestAddWithHeartbeat:
    def test_add_with_ttl_is_also_a_heartbeat(self, store: Store, target: str) -> None:
        """One round trip a second: counts and the heartbeat go together."""
        store.add(target, [delta()], process="p1", host="h1", ttl=10)
        store.add(target, [delta()], process="p2", host="h2")
        assert store.live(target) == (1, 1), "without ttl, add notes a contributor, not a live process"
        store.add(target, [delta()], process="p3", host="h2", ttl=0.1)
        assert store.live(target) == (2, 2)
        pass_time(0.1)
        assert store.live(target) == (1, 1)

    def test_bad_ttl_is_refused(self, store: Store, target: str) -> None:
        with pytest.raises(ValueError, match="ttl"):
            store.add(target, [delta()], process="p1", host="h1", ttl=0)


class TestLease:
    def claimed(self, store: Store, target: str, lease: float = LEASE) -> str:
        store.add(target, [delta(count=3)], process="p1", host="h1")
        claim = store.claim(target, window=WINDOW, lease=lease)
        assert claim is not None
        return claim.claim_id

    def test_expired_lease_is_reoffered_to_another_claimer(self, store: Store, target: str) -> None:
        """A digest whose claimer never acknowledged it goes to the next claimer after the lease."""
        first = self.claimed(store, target)
        assert store.claim(target, window=10, lease=LEASE) is None, "the lease still holds"
        pass_time(LEASE)
        again = store.claim(target, window=10, lease=LEASE)
        assert again is not None
        assert again.reoffered and again.claim_id != first and again.total == 3
        assert not store.renew(target, first, LEASE), "the first claimer lost it"
        store.ack(target, first)  # a late ack of the lost claim changes nothing
        assert store.status(target)["leases"] == 1
        store.ack(target, again.claim_id)
        assert store.status(target)["leases"] == 0

    def test_renewed_lease_is_not_reoffered(self, store: Store, target: str) -> None:
        """A claimer that renews while it retries keeps its digest."""
        first = self.claimed(store, target)
        assert store.renew(target, first, 10)
        pass_time(LEASE)
        assert store.claim(target, window=10, lease=LEASE) is None
        assert store.renew(target, first, LEASE)

    def test_held_back_note_goes_with_the_next_claim_once(self, store: Store, target: str) -> None:
        """``hold`` keeps the first time a page was held back; the next claim reports and clears it."""
        store.hold(target)
        first_hold = time.time()
        pass_time(0.05)
        store.hold(target)
        store.add(target, [delta()], process="p1", host="h1")
        claim = store.claim(target, window=WINDOW, lease=LEASE)
        assert claim is not None and claim.held_since is not None
        assert abs(claim.held_since - first_hold) < 0.05
        store.ack(target, claim.claim_id)
        store.add(target, [delta()], process="p1", host="h1")
        pass_time(WINDOW)
        later = store.claim(target, window=WINDOW, lease=LEASE)
        assert later is not None and later.held_since is None


class TestBudget:
    def test_capacity_per_period_then_the_wait(self, store: Store, target: str) -> None:
        """A bucket gives ``capacity`` at once, then says how long until the next token."""
        assert [store.spend(target, [(3, 30)]) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert 9.8 < store.spend(target, [(3, 30)]) <= 10.0

    def test_all_buckets_or_none(self, store: Store, target: str) -> None:
        """A spend the long bucket refuses takes nothing from the short one."""
        buckets = [(5, 60), (1, 3600)]
        assert store.spend(target, buckets) == 0.0
        assert store.spend(target, buckets) > 3000
        assert store.status(target)["budget"]["5/60"] == pytest.approx(4, abs=0.01)

    def test_tokens_come_back_after_the_wait(self, store: Store, target: str) -> None:
        """Waiting the seconds spend() returned makes the spend succeed."""
        assert store.spend(target, [(2, 0.4)], cost=2) == 0.0
        wait = store.spend(target, [(2, 0.4)])
        assert 0.15 < wait <= 0.2
        pass_time(wait)
        assert store.spend(target, [(2, 0.4)]) == 0.0

    @pytest.mark.parametrize(
        ("buckets", "cost"), [([], 1), ([(0, 60)], 1), ([(5, -1)], 1), ([(5, 60)], 6), ([(5, 60)], 0)]
    )
    def test_impossible_budgets_are_refused(
        self, store: Store, target: str, buckets: list, cost: float
    ) -> None:  # type: ignore[type-arg]
        """A budget that could never be spent is a programming error, said at once."""
        with pytest.raises(ValueError):
            store.spend(target, buckets, cost)


class TestCircuit:
    def test_open_circuit_pauses_everyone_until_closed(self, store: Store, target: str) -> None:
        """One process's auth failure is seen by all; a shorter pause never shortens it."""
        assert store.circuit(target) is None
        store.open_circuit(target, 60, "SMN.0001 auth")
        store.open_circuit(target, 1, "throttled")
        left, reason = store.circuit(target) or (0.0, "")
        assert 59 < left <= 60 and reason == "SMN.0001 auth"
        store.close_circuit(target)
        assert store.circuit(target) is None

    def test_circuit_closes_by_itself(self, store: Store, target: str) -> None:
        """A pause ends when its seconds are over."""
        store.open_circuit(target, 0.1, "throttled")
        pass_time(0.1)
        assert store.circuit(target) is None
        assert store.status(target)["circuit"] is None


class TestLiveness:
    def test_live_processes_and_hosts(self, store: Store, target: str) -> None:
        """Heartbeats count processes and hosts until they expire; leaving says how many are left."""
        store.heartbeat(target, "p1", "h1", 10)
        store.heartbeat(target, "p2", "h1", 10)
        store.heartbeat(target, "p3", "h2", 0.1)
        assert store.live(target) == (3, 2)
        pass_time(0.1)
        assert store.live(target) == (2, 1)
        assert store.leave(target, "p1") == 1
        assert store.leave(target, "p2") == 0, "the last one out knows it is the last"


class TestStatusAndExpiry:
    def test_status_is_the_fleet_view(self, store: Store, target: str) -> None:
        """Status shows the window, counts waiting, leases, budget, held note, circuit and live processes."""
        store.observe(target, level=CRITICAL, window=60)
        store.add(target, [delta("a", 4), delta("b", 2)], process="p1", host="h1")
        store.spend(target, [(5, 600)])
        store.hold(target)
        store.open_circuit(target, 30, "auth")
        store.heartbeat(target, "p1", "h1", 10)
        view = store.status(target)
        assert 59 < view.pop("window")["ends_in"] <= 60
        assert view.pop("held_since") == pytest.approx(time.time(), abs=1)
        assert view.pop("circuit")["reason"] == "auth"
        assert view.pop("budget")["5/600"] == pytest.approx(4, abs=0.01)
        assert view == {"target": target, "kinds": 2, "waiting": 6, "leases": 0, "expired_leases": 0,
                        "processes": 1, "hosts": 1}  # fmt: skip
        assert target in store.targets()

    def test_quiet_target_leaves_nothing_behind(self, store: Store, target: str) -> None:
        """Once a target is quiet and its budget full again, the store holds nothing of it."""
        store.observe(target, level=ERROR, window=0.1)
        store.add(target, [delta()], process="p1", host="h1")
        store.spend(target, [(1, 0.2)])
        store.heartbeat(target, "p1", "h1", 0.1)
        store.open_circuit(target, 0.1, "auth")
        pass_time(0.1)
        claim = store.claim(target, window=0.1, lease=LEASE)
        assert claim is not None
        store.ack(target, claim.claim_id)
        pass_time(0.1)
        assert store.claim(target, window=0.1, lease=LEASE) is None
        wait_until(lambda: target not in store.targets(), timeout=2)

    def test_every_redis_key_is_under_the_hash_tag_and_expires(
        self, redis_server: RedisServer, target: str, make_store: Callable[[str | None], Store]
    ) -> None:
        """All of a target's keys share one hash tag (one Cluster slot) and each has an expiry."""
        store = make_store(redis_server.url)
        store.observe(target, level=ERROR, window=60)
        store.add(target, [delta(sample="s")], process="p1", host="h1")
        store.spend(target, [(5, 600)])
        store.hold(target)
        store.open_circuit(target, 30, "auth")
        store.heartbeat(target, "p1", "h1", 10)
        store.add(uuid.uuid4().hex, [delta()], process="p1", host="h1")
        client = redis.Redis.from_url(redis_server.url)
        keys = {key.decode() for key in client.scan_iter(match=f"*{target}*")}
        assert keys and keys <= set(key_names(target))
        assert all(client.pttl(key) > 0 for key in keys)
        client.close()


class TestArguments:
    @pytest.mark.parametrize("bad", ["", "a{b}", "with space", "x" * 129])
    def test_bad_target_is_refused(self, store: Store, bad: str) -> None:
        """A target that could not be a key (or would break the hash tag) is a programming error."""
        with pytest.raises(ValueError, match="target"):
            store.observe(bad, level=ERROR, window=WINDOW)

    def test_durations_must_be_positive(self, store: Store, target: str) -> None:
        """Zero or negative windows, leases and ttls are refused before any I/O."""
        with pytest.raises(ValueError, match="window"):
            store.observe(target, level=ERROR, window=0)
        with pytest.raises(ValueError, match="lease"):
            store.claim(target, window=1, lease=-1)
        with pytest.raises(ValueError, match="ttl"):
            store.heartbeat(target, "p", "h", 0)

    @pytest.mark.parametrize(
        ("fields", "why"),
        [({"count": 0}, "count"), ({"kind": ""}, "kind"), ({"sample": "x" * 1025}, "sample")],
    )
    def test_bad_delta_is_refused(self, fields: dict, why: str) -> None:  # type: ignore[type-arg]
        """A delta that counts nothing, names no kind or carries a huge sample is refused when built."""
        values = {"kind": "k", "level": ERROR, "count": 1, "sample": "", "first_seen": 1.0, "last_seen": 1.0}
        with pytest.raises(ValueError, match=why):
            KindDelta(**{**values, **fields})
