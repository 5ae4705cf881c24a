"""The shared store on SQLite: a user's processes on one host, one WAL file, one transaction per operation.

Each operation is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken first, so two processes never
both read a count and then both reset it) and reads the host's wall clock once inside it. One file holds every
target (a ``target`` column): the default location and a chosen ``sqlite:///path`` then work the same way,
one connection serves every pager of a process, and ``targets()`` is a query. Operations are about one a
second per process, so targets sharing the file's write lock cost nothing noticeable.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Callable, TypeVar

from smn_alert._store import (
    HELD_KEEP,
    KEEP_WINDOWS,
    MIN_KEEP,
    ORPHAN_KEEP,
    PAYLOAD_KEEP,
    Bucket,
    Claim,
    KindCount,
    KindDelta,
    StoreUnavailable,
    check_buckets,
    check_positive,
    check_target,
    decode_claim,
    encode_payload,
    gcra,
    merge_kinds,
    status_view,
)

#: Seconds an operation waits for another process's write lock before the store counts as unavailable. A lock
#: held is not a store that is down: when 200 processes meet one incident at once, they queue for the file
#: (measured: at 0.2 s, 190 of 200 fell back to paging alone; each transaction holds it for well under a
#: millisecond). Only the worker thread ever waits, never the application.
SQLITE_BUSY_TIMEOUT = 2.0
#: The file's name in the private directory.
FILE_NAME = "shared-state.db"
_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS windows (target TEXT PRIMARY KEY, ends REAL NOT NULL,"
    " level INTEGER NOT NULL, started REAL NOT NULL, keep REAL NOT NULL, expires REAL NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS kinds (target TEXT, kind TEXT, level INTEGER NOT NULL,"
    " count INTEGER NOT NULL, sample TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,"
    " expires REAL NOT NULL, PRIMARY KEY (target, kind)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS contributors (target TEXT, process TEXT, host TEXT NOT NULL,"
    " expires REAL NOT NULL, PRIMARY KEY (target, process)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS claims (target TEXT, claim_id TEXT, lease_until REAL NOT NULL,"
    " payload TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (target, claim_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS buckets (target TEXT, bucket TEXT, tat REAL NOT NULL,"
    " expires REAL NOT NULL, PRIMARY KEY (target, bucket)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS held (target TEXT PRIMARY KEY, since REAL NOT NULL,"
    " expires REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS circuits (target TEXT PRIMARY KEY, reason TEXT NOT NULL,"
    " expires REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS processes (target TEXT, process TEXT, host TEXT NOT NULL,"
    " expires REAL NOT NULL, PRIMARY KEY (target, process)) WITHOUT ROWID",
)
_TABLES = ("windows", "kinds", "contributors", "claims", "buckets", "held", "circuits", "processes")
# Held only for the instant of swapping a connection after a fork, never during I/O.
_FORK_LOCK = threading.Lock()
_T = TypeVar("_T")


def default_path() -> str:
    """Return the default file: ``$TMPDIR`` (or ``/tmp``) ``/smn_alert-<uid>/shared-state.db``.

    Why there: it depends only on the user, not on ``HOME`` or ``XDG_*`` variables that differ between a
    shell, cron, systemd and a container, so every process of the user on the host finds the same file; it is
    writable in containers with a read-only root. A shared ``/tmp`` is made safe by refusing a directory that
    is a symlink, someone else's, or open to others. The budget then survives restarts but not a reboot.
    """
    base = os.environ.get("TMPDIR", "")
    base = base if os.path.isabs(base) else "/tmp"
    return os.path.join(base, f"smn_alert-{os.geteuid()}", FILE_NAME)


def _ensure_private_dir(path: str) -> None:
    """Create ``path`` 0700, or refuse it when it is a symlink, not a directory, someone else's, or shared."""
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    why = ""
    if stat.S_ISLNK(info.st_mode):
        why = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        why = "is not a directory"
    elif info.st_uid != os.geteuid():
        why = f"belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})"
    elif info.st_mode & 0o077:
        why = f"is open to group or others (mode {stat.S_IMODE(info.st_mode):o}, needs 700)"
    if why:
        raise StoreUnavailable(f"refusing the state directory {path}: it {why}")


class SQLiteStore:
    """The :class:`~smn_alert._store.Store` on a SQLite file; thread-safe and fork-safe.

    Args:
        path: The database file.
        private_dir: Create its directory 0700 and refuse one that is not private (the default location).
    """

    def __init__(self, path: str, *, private_dir: bool) -> None:
        self.path = path
        self.url = f"sqlite://{path}"
        self._private_dir = private_dir
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file the connection has open
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # A parent's connection is never used nor closed in a child: closing could touch the parent's locks.
        self._inherited: list[sqlite3.Connection] = []

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    def close(self) -> None:
        """Close this process's connection; the next operation opens a new one."""
        with self._locked():
            self._drop()

    # -- connection ------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold this process's lock (a new one after a fork: the parent's may have been held at the fork)."""
        if self._pid != os.getpid():
            with _FORK_LOCK:
                if self._pid != os.getpid():
                    if self._db is not None:
                        self._inherited.append(self._db)
                    self._db, self._lock, self._pid = None, threading.Lock(), os.getpid()
        with self._lock:
            yield

    def _drop(self) -> None:
        """Close the connection (after a failure it may be unusable; the next operation reconnects)."""
        db, self._db = self._db, None
        if db is not None:
            with suppress(sqlite3.Error):
                db.close()

    def _connection(self) -> sqlite3.Connection:
        """Return the connection, opening it again when the file was removed or replaced (a /tmp cleaner).

        Otherwise this process would go on alone in a deleted file while new processes share a new one.
        """
        if self._db is not None and _identity(self.path) != self._file:
            self._drop()
        if self._db is None:
            self._db = self._connect()
            self._file = _identity(self.path)
        return self._db

    def _connect(self) -> sqlite3.Connection:
        """Open the file in WAL mode with a short busy timeout and create the tables on first use."""
        if self._private_dir:
            _ensure_private_dir(os.path.dirname(self.path))
        db = sqlite3.connect(
            self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            _set_up(db)
        except BaseException:
            db.close()
            raise
        return db

    def _run(self, target: str | None, operation: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Run ``operation(db, now)`` in one write transaction, on the host's clock read inside it."""
        if target is not None:
            check_target(target)
        with self._locked():
            try:
                return self._transaction(target, operation)
            except (sqlite3.Error, OSError) as exc:
                self._drop()
                raise StoreUnavailable(f"shared_state {self.url}: {type(exc).__name__}: {exc}") from None
            except StoreUnavailable:
                self._drop()
                raise

    def _transaction(self, target: str | None, operation: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Begin (taking the write lock), drop the target's expired rows, run ``operation``, commit."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            for table in _TABLES if target is not None else ():
                db.execute(f"DELETE FROM {table} WHERE target = ? AND expires <= ?", (target, now))
            result = operation(db, now)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise
        return result

    # -- operations ------------------------------------------------------------------------------------------

    def observe(self, target: str, *, level: int, window: float) -> bool:
        """See :meth:`smn_alert._store.Store.observe`."""
        check_positive(window=window)
        return self._run(target, lambda db, now: _observe(db, target, now, level, window))

    def add(
        self, target: str, deltas: Sequence[KindDelta], *, process: str, host: str, ttl: float | None = None
    ) -> None:
        """See :meth:`smn_alert._store.Store.add`; no round trip when there is nothing to add."""
        if ttl is not None:
            check_positive(ttl=ttl)
        if deltas:
            self._run(target, lambda db, now: _add(db, target, now, deltas, process, host, ttl))

    def claim(
        self, target: str, *, window: float, lease: float, max_kinds: int = 200, force: bool = False
    ) -> Claim | None:
        """See :meth:`smn_alert._store.Store.claim`."""
        check_positive(window=window, lease=lease, max_kinds=max_kinds)
        claim_id = uuid.uuid4().hex
        found = self._run(
            target, lambda db, now: _claim(db, target, now, claim_id, (window, lease, max_kinds), force)
        )
        return None if found is None else decode_claim(claim_id, found[0], found[1])

    def renew(self, target: str, claim_id: str, lease: float) -> bool:
        """See :meth:`smn_alert._store.Store.renew`."""
        check_positive(lease=lease)
        sql = "UPDATE claims SET lease_until = ?, expires = ? WHERE target = ? AND claim_id = ?"
        return (
            self._run(
                target,
                lambda db, now: db.execute(sql, (now + lease, now + lease + PAYLOAD_KEEP, target, claim_id)),
            ).rowcount
            == 1
        )

    def ack(self, target: str, claim_id: str) -> None:
        """See :meth:`smn_alert._store.Store.ack`."""
        sql = "DELETE FROM claims WHERE target = ? AND claim_id = ?"
        self._run(target, lambda db, now: db.execute(sql, (target, claim_id)))

    def spend(self, target: str, buckets: Sequence[Bucket], cost: float = 1) -> float:
        """See :meth:`smn_alert._store.Store.spend`."""
        named = check_buckets(buckets, cost)
        return self._run(target, lambda db, now: _spend(db, target, now, named, cost))

    def hold(self, target: str) -> None:
        """See :meth:`smn_alert._store.Store.hold`."""
        sql = "INSERT OR IGNORE INTO held VALUES (?, ?, ?)"
        self._run(target, lambda db, now: db.execute(sql, (target, now, now + HELD_KEEP)))

    def open_circuit(self, target: str, seconds: float, reason: str) -> None:
        """See :meth:`smn_alert._store.Store.open_circuit`."""
        check_positive(seconds=seconds)
        sql = (
            "INSERT INTO circuits VALUES (?, ?, ?) ON CONFLICT (target) DO UPDATE SET"
            " reason = excluded.reason, expires = excluded.expires WHERE excluded.expires > expires"
        )
        self._run(target, lambda db, now: db.execute(sql, (target, reason, now + seconds)))

    def circuit(self, target: str) -> tuple[float, str] | None:
        """See :meth:`smn_alert._store.Store.circuit`."""
        sql = "SELECT expires - ?, reason FROM circuits WHERE target = ?"
        row = self._run(target, lambda db, now: db.execute(sql, (now, target)).fetchone())
        return None if row is None else (float(row[0]), str(row[1]))

    def close_circuit(self, target: str) -> None:
        """See :meth:`smn_alert._store.Store.close_circuit`."""
        self._run(target, lambda db, now: db.execute("DELETE FROM circuits WHERE target = ?", (target,)))

    def heartbeat(self, target: str, process: str, host: str, ttl: float) -> None:
        """See :meth:`smn_alert._store.Store.heartbeat`."""
        check_positive(ttl=ttl)
        sql = "INSERT OR REPLACE INTO processes VALUES (?, ?, ?, ?)"
        self._run(target, lambda db, now: db.execute(sql, (target, process, host, now + ttl)))

    def leave(self, target: str, process: str) -> int:
        """See :meth:`smn_alert._store.Store.leave`."""
        return self._run(target, lambda db, now: _leave(db, target, process))

    def live(self, target: str) -> tuple[int, int]:
        """See :meth:`smn_alert._store.Store.live`."""
        return self._run(target, lambda db, now: _live(db, target))

    def status(self, target: str) -> dict[str, Any]:
        """See :meth:`smn_alert._store.Store.status`."""
        return self._run(target, lambda db, now: _status(db, target, now))

    def targets(self) -> list[str]:
        """See :meth:`smn_alert._store.Store.targets`; also drops every target's expired rows."""
        return self._run(None, _targets)


def _identity(path: str) -> tuple[int, int] | None:
    """Return the ``(device, inode)`` of the file at ``path``, or None when there is none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _set_up(db: sqlite3.Connection) -> None:
    """Set the connection's options and the file's WAL mode and tables, retrying while the file is busy.

    Processes that open a new file together (4 forked workers at an incident's start) meet SQLite's
    "database is locked" from the switch to WAL without its busy handler being asked: retried here, with
    jitter, up to SQLITE_BUSY_TIMEOUT (on the worker thread, once per process).
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            db.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across a crash of any process
            _create_schema(db)
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005 + 0.02 * (os.getpid() % 7) / 7)


def _create_schema(db: sqlite3.Connection) -> None:
    """Create the tables once per file (in one transaction: processes may start together)."""
    if db.execute("PRAGMA user_version").fetchone()[0] == _SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise StoreUnavailable(f"the state file has schema {version}, newer than this smn_alert's")
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


def _exists(db: sqlite3.Connection, table: str, target: str) -> bool:
    """Whether ``table`` has a row for ``target``."""
    sql = f"SELECT 1 FROM {table} WHERE target = ? LIMIT 1"
    return db.execute(sql, (target,)).fetchone() is not None


def _open_window(
    db: sqlite3.Connection, target: str, now: float, window: float, level: int, started: float
) -> None:
    """Open (or re-arm) the target's window: folding lasts until ``now + window``."""
    keep = max(KEEP_WINDOWS * window, MIN_KEEP)
    row = (target, now + window, level, started, keep, now + window + keep)
    db.execute("INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?, ?, ?)", row)


def _observe(db: sqlite3.Connection, target: str, now: float, level: int, window: float) -> bool:
    """Decide the first page (see ``Store.observe``); the Redis script ``observe`` mirrors this."""
    row = db.execute("SELECT ends, level, started FROM windows WHERE target = ?", (target,)).fetchone()
    quiet = row is None or (
        now >= row[0] and not _exists(db, "kinds", target) and not _exists(db, "claims", target)
    )
    if not quiet and level <= row[1]:
        return False
    _open_window(db, target, now, window, level, now if quiet else row[2])
    return True


def _add(
    db: sqlite3.Connection,
    target: str,
    now: float,
    deltas: Sequence[KindDelta],
    process: str,
    host: str,
    ttl: float | None,
) -> None:
    """Merge counts per kind and note the contributor; keep them as long as their window (or ORPHAN_KEEP).

    With ``ttl``, also the process's heartbeat.
    """
    if ttl is not None:
        db.execute("INSERT OR REPLACE INTO processes VALUES (?, ?, ?, ?)", (target, process, host, now + ttl))
    db.executemany(
        "INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (target, kind) DO UPDATE SET"
        " level = max(level, excluded.level), count = count + excluded.count,"
        " sample = CASE WHEN sample = '' THEN excluded.sample ELSE sample END,"
        " first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)",
        [(target, d.kind, d.level, d.count, d.sample, d.first_seen, d.last_seen) for d in deltas],
    )
    db.execute("INSERT OR REPLACE INTO contributors VALUES (?, ?, ?, 0)", (target, process, host))
    row = db.execute("SELECT ends, keep FROM windows WHERE target = ?", (target,)).fetchone()
    expires = now + (ORPHAN_KEEP if row is None else max(row[0] - now, 0.0) + row[1])
    for table in ("kinds", "contributors"):
        db.execute(f"UPDATE {table} SET expires = ? WHERE target = ?", (expires, target))


def _claim(
    db: sqlite3.Connection,
    target: str,
    now: float,
    claim_id: str,
    limits: tuple[float, float, int],
    force: bool,
) -> tuple[str, bool] | None:
    """Re-offer an expired lease, else claim a due window's counts; return ``(payload, reoffered)``.

    ``limits`` is ``(window, lease, max_kinds)``; with ``force`` an open window's counts are taken too.
    """
    window, lease, max_kinds = limits
    expired = db.execute(
        "SELECT claim_id, payload FROM claims WHERE target = ? AND lease_until <= ?"
        " ORDER BY lease_until, claim_id LIMIT 1",
        (target, now),
    ).fetchone()
    if expired is not None:
        db.execute("DELETE FROM claims WHERE target = ? AND claim_id = ?", (target, expired[0]))
        _store_claim(db, target, now, claim_id, lease, expired[1])
        return expired[1], True
    row = db.execute("SELECT ends, started FROM windows WHERE target = ?", (target,)).fetchone()
    ended = row is None or now >= row[0]
    if not ended and not force:
        return None
    payload = _take_counts(db, target, now, window, max_kinds, started=now if row is None else row[1])
    if payload is None:
        if row is not None and ended and not _exists(db, "claims", target):
            db.execute("DELETE FROM windows WHERE target = ?", (target,))  # quiet: the next alert pages
        return None
    _store_claim(db, target, now, claim_id, lease, payload)
    return payload, False


def _take_counts(
    db: sqlite3.Connection, target: str, now: float, window: float, max_kinds: int, started: float
) -> str | None:
    """Read and reset the counts, contributors and held note, re-arm the window; return the payload."""
    rows = db.execute(
        "SELECT kind, level, count, sample, first_seen, last_seen FROM kinds WHERE target = ?", (target,)
    ).fetchall()
    if not rows:
        return None
    kinds = merge_kinds([KindCount(*row) for row in rows], max_kinds)
    processes, hosts = db.execute(
        "SELECT count(*), count(DISTINCT host) FROM contributors WHERE target = ?", (target,)
    ).fetchone()
    held = db.execute("SELECT since FROM held WHERE target = ?", (target,)).fetchone()
    for table in ("kinds", "contributors", "held"):
        db.execute(f"DELETE FROM {table} WHERE target = ?", (target,))
    _open_window(db, target, now, window, max(kind.level for kind in kinds), now)
    return encode_payload(kinds, processes, hosts, None if held is None else held[0], started)


def _store_claim(
    db: sqlite3.Connection, target: str, now: float, claim_id: str, lease: float, payload: str
) -> None:
    """Keep ``payload`` under ``claim_id``, leased until ``now + lease``."""
    row = (target, claim_id, now + lease, payload, now + lease + PAYLOAD_KEEP)
    db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", row)


def _spend(
    db: sqlite3.Connection, target: str, now: float, named: Sequence[tuple[str, float, float]], cost: float
) -> float:
    """Take ``cost`` from every bucket or none (GCRA); a bucket's row expires when it would be full again."""
    sql = "SELECT tat FROM buckets WHERE target = ? AND bucket = ?"
    tats = [db.execute(sql, (target, name)).fetchone() for name, _, _ in named]
    wait, arrivals = gcra([None if tat is None else tat[0] for tat in tats], named, cost, now)
    if wait > 0:
        return wait
    db.executemany(
        "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?, ?)",
        [(target, name, tat, tat) for (name, _, _), tat in zip(named, arrivals)],
    )
    return 0.0


def _leave(db: sqlite3.Connection, target: str, process: str) -> int:
    """Forget ``process``'s heartbeat and count the live ones left."""
    db.execute("DELETE FROM processes WHERE target = ? AND process = ?", (target, process))
    return _live(db, target)[0]


def _live(db: sqlite3.Connection, target: str) -> tuple[int, int]:
    """Count live processes and their hosts (expired heartbeats were pruned when the transaction began)."""
    sql = "SELECT count(*), count(DISTINCT host) FROM processes WHERE target = ?"
    processes, hosts = db.execute(sql, (target,)).fetchone()
    return int(processes), int(hosts)


def _status(db: sqlite3.Connection, target: str, now: float) -> dict[str, Any]:
    """Gather the fleet view of ``target``."""

    def one(sql: str) -> Any:
        return db.execute(sql, (target,)).fetchone()

    window = one("SELECT ends, level, started FROM windows WHERE target = ?")
    circuit = one("SELECT expires, reason FROM circuits WHERE target = ?")
    held = one("SELECT since FROM held WHERE target = ?")
    return status_view(
        target,
        now,
        None if window is None else (window[0], window[1], window[2]),
        one("SELECT count(*), coalesce(sum(count), 0) FROM kinds WHERE target = ?"),
        [row[0] for row in db.execute("SELECT lease_until FROM claims WHERE target = ?", (target,))],
        None if held is None else held[0],
        dict(db.execute("SELECT bucket, tat FROM buckets WHERE target = ?", (target,)).fetchall()),
        None if circuit is None else (circuit[0], circuit[1]),
        _live(db, target),
    )


def _targets(db: sqlite3.Connection, now: float) -> list[str]:
    """Drop every expired row, then list the targets left."""
    for table in _TABLES:
        db.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,))
    union = " UNION ".join(f"SELECT target FROM {table}" for table in _TABLES)
    return sorted(row[0] for row in db.execute(union))
