"""The shared store across real processes: forked workers on one target, a claimer killed by SIGKILL, and
Redis refused, hung (SIGSTOP) and restarted.

The worker code is at the end of this module and runs as ``python -m tests.test_store_processes ROLE ...``:
a fresh interpreter that forks its workers itself, as gunicorn or Celery prefork would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import redis

from smn_alert._store import KindDelta, Store, StoreUnavailable, open_store
from smn_alert._store_redis import SOCKET_TIMEOUT
from tests.redis_server import RedisServer

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).parent.parent
#: Generous: a child that hangs must fail its test, not the run.
RUN_TIMEOUT = 60.0
#: A refused or hung Redis must fail an operation within this many seconds.
FAIL_BOUND = 0.5
WINDOW = 0.3
ERROR = 40


def role(name: str, *args: str) -> list[str]:
    """The command line running one of this module's worker roles in a fresh interpreter."""
    return [sys.executable, "-m", "tests.test_store_processes", name, *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def opened(url: str) -> Store:
    store = open_store(url)
    assert store is not None
    return store


@pytest.fixture
def make_store() -> Iterator[Callable[[str], Store]]:
    """Open stores that are closed after the test (an unclosed connection is a ResourceWarning)."""
    made: list[Store] = []

    def make(url: str) -> Store:
        made.append(opened(url))
        return made[-1]

    yield make
    for store in made:
        store.close()


def timed_failure(operation: Any) -> float:
    """Run ``operation``, expect StoreUnavailable, and return how long it took."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        operation()
    return time.monotonic() - started


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: the tests here stop, freeze and restart it."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.db"
    return str(request.getfixturevalue("redis_server").url)


def drain(store: Store, target: str) -> list[dict[str, Any]]:
    """Claim and acknowledge what is left once the last window ends; return the claims."""
    claims = []
    deadline = time.monotonic() + 5
    while store.status(target)["window"] is not None or store.status(target)["kinds"]:
        assert time.monotonic() < deadline, "the target never went quiet"
        claim = store.claim(target, window=WINDOW, lease=5)
        if claim is None:
            time.sleep(0.02)
            continue
        store.ack(target, claim.claim_id)
        claims.append(
            {"id": claim.claim_id, "total": claim.total, "processes": claim.processes, "again": False}
        )
    return claims


class TestForkedWorkers:
    def test_one_first_page_and_every_alert_counted_once(
        self, url: str, tmp_path: Path, make_store: Callable[[str], Store]
    ) -> None:
        """8 forked workers alert 1.5 s: one first page, digests summing exactly to the rest, none twice."""
        target, workers = uuid.uuid4().hex, 8
        out = tmp_path / "out"
        out.mkdir()
        done = subprocess.run(
            role("hammer", url, target, str(workers), "1.5", str(out)),
            cwd=ROOT, env=child_env(), timeout=RUN_TIMEOUT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        reports = [json.loads(path.read_text()) for path in out.glob("*.json")]
        assert len(reports) == workers
        claims = [claim for report in reports for claim in report["claims"]]
        claims += drain(make_store(url), target)
        alerts = sum(report["alerts"] for report in reports)
        pages = sum(report["pages"] for report in reports)
        assert pages == 1, "one first page for the whole incident"
        assert pages + sum(claim["total"] for claim in claims) == alerts, "every alert counted exactly once"
        assert len({claim["id"] for claim in claims}) == len(claims)
        assert not any(claim["again"] for claim in claims), "no digest re-offered while every claimer lives"
        assert max(claim["processes"] for claim in claims) > 1, "digests count the whole fleet"
        assert alerts > 200

    def test_forked_child_never_uses_the_parents_connection(self, url: str) -> None:
        """A store used before a fork opens its own connection in each child; the parent's keeps working."""
        done = subprocess.run(
            role("fork-check", url, uuid.uuid4().hex),
            cwd=ROOT, env=child_env(), timeout=RUN_TIMEOUT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["child-ok", "child-ok", "parent-ok"]


class TestNewFile:
    def test_processes_opening_a_new_file_together_all_get_in(self, tmp_path: Path) -> None:
        """8 forked processes open a fresh SQLite file at once, 20 times: none takes the WAL switch's
        "database is locked" for a store that is down (it was about 1 in 80 before the retry)."""
        failed = 0
        for trial in range(20):
            path = tmp_path / f"fresh-{trial}.db"
            start_read, start_write = os.pipe()
            children = []
            for index in range(8):
                pid = os.fork()
                if pid == 0:  # the child: wait for the start, open, write once
                    os.close(start_write)
                    os.read(start_read, 1)
                    try:
                        opened(f"sqlite:///{path}").heartbeat("t1", f"p{index}", "h", 10.0)
                        os._exit(0)
                    except BaseException:
                        os._exit(1)
                children.append(pid)
            os.close(start_read)
            os.write(start_write, b"go" * 4)
            os.close(start_write)
            failed += sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children)
        assert failed == 0


class TestKilledClaimer:
    def test_digest_of_a_killed_claimer_is_sent_by_another(
        self, url: str, make_store: Callable[[str], Store]
    ) -> None:
        """A process SIGKILLed after its claim, before its ack: the digest is re-offered after the lease."""
        store, target = make_store(url), uuid.uuid4().hex
        store.add(target, [KindDelta("k", ERROR, 490, "db down", 1.0, 2.0)], process="p1", host="h1")
        command = role("claim-and-hang", url, target)
        with subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True) as child:
            try:
                assert child.stdout is not None
                first = json.loads(child.stdout.readline())
                child.send_signal(signal.SIGKILL)
            finally:
                child.kill()
        assert first["total"] == 490
        assert store.claim(target, window=WINDOW, lease=5) is None, "its lease still holds"
        deadline = time.monotonic() + 5
        while (again := store.claim(target, window=WINDOW, lease=5)) is None:
            assert time.monotonic() < deadline, "the digest was never re-offered"
            time.sleep(0.02)
        assert again.reoffered and again.claim_id != first["id"]
        assert (again.total, again.kinds[0].sample) == (490, "db down")


class TestRedisFailures:
    def test_refused_connection_fails_fast(self, make_store: Callable[[str], Store]) -> None:
        """Nothing listening: an operation fails within the bound, naming the store without its password."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        store = make_store(f"redis://:pw-s3cret@127.0.0.1:{port}/0")
        with pytest.raises(StoreUnavailable) as caught:
            store.observe("t", level=ERROR, window=WINDOW)
        assert "pw-s3cret" not in str(caught.value) and "redis://:***@127.0.0.1" in str(caught.value)
        assert timed_failure(lambda: store.observe("t", level=ERROR, window=WINDOW)) < FAIL_BOUND

    def test_server_that_never_accepts_fails_fast(self, make_store: Callable[[str], Store]) -> None:
        """A listener whose backlog is full never completes a connect: the connect timeout bounds it."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            fillers = [socket.socket() for _ in range(4)]
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(listener.getsockname())
            store = make_store(f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
            try:
                took = timed_failure(lambda: store.observe("t", level=ERROR, window=WINDOW))
            finally:
                for filler in fillers:
                    filler.close()
        assert SOCKET_TIMEOUT * 0.9 < took < FAIL_BOUND

    def test_hung_server_fails_fast_and_recovers(
        self, redis_server: RedisServer, make_store: Callable[[str], Store]
    ) -> None:
        """Server frozen (SIGSTOP) mid-incident: each operation fails within the bound; then all work."""
        store, target = make_store(redis_server.url), uuid.uuid4().hex
        assert store.observe(target, level=ERROR, window=WINDOW)
        redis_server.pause()
        try:
            took = [
                timed_failure(lambda: store.observe(target, level=ERROR, window=WINDOW)),
                timed_failure(lambda: store.claim(target, window=WINDOW, lease=1)),
                timed_failure(lambda: make_store(redis_server.url).live(target)),  # a new connection too
            ]
        finally:
            redis_server.resume()
        assert all(SOCKET_TIMEOUT * 0.9 < seconds < FAIL_BOUND for seconds in took), took
        assert store.observe(target, level=50, window=WINDOW), "answers are not mixed up after the timeouts"
        assert store.live(target) == (0, 0)

    def test_scripts_are_loaded_again_after_a_restart(
        self, redis_server: RedisServer, make_store: Callable[[str], Store]
    ) -> None:
        """A restarted server has no scripts: the next operation loads them (NOSCRIPT is no failure)."""
        store, target = make_store(redis_server.url), uuid.uuid4().hex
        assert store.observe(target, level=ERROR, window=60)
        redis_server.restart()
        client = redis.Redis.from_url(redis_server.url)
        assert client.script_exists(*[script.sha for script in store._scripts.values()]) == [False] * 14  # type: ignore[attr-defined]
        assert store.observe(target, level=ERROR, window=60), "the restarted server forgot the window"
        assert client.script_exists(store._scripts["observe"].sha) == [True]  # type: ignore[attr-defined]
        client.close()

    def test_wrong_password_is_unavailable_without_the_password(
        self, tmp_path: Path, make_store: Callable[[str], Store]
    ) -> None:
        """A refused password fails as StoreUnavailable and the message never repeats it."""
        server = RedisServer(tmp_path, password="right-one").start()
        try:
            store = make_store(f"redis://:wr0ng-one@127.0.0.1:{server.port}/0")
            with pytest.raises(StoreUnavailable) as caught:
                store.observe("t", level=ERROR, window=WINDOW)
            assert "wr0ng-one" not in str(caught.value) and "right-one" not in str(caught.value)
            assert make_store(server.url).observe("t", level=ERROR, window=WINDOW)
        finally:
            server.stop()


# -- worker roles (run in child interpreters) ---------------------------------------------------------------


def hammer(url: str, target: str, workers: str, seconds: str, out: str) -> None:
    """Use the store, then fork ``workers`` alerting on ``target`` for ``seconds``; exit 1 if any failed."""
    store = opened(url)
    store.live(target)  # the parent's connection exists before the fork, as in a preloading server
    start = time.time() + 0.2
    children = []
    for _ in range(int(workers)):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _work(store, target, start, start + float(seconds), Path(out))
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
    sys.exit(1 if failed else 0)


def _work(store: Store, target: str, start: float, end: float, out: Path) -> None:
    """Alert every couple of milliseconds; fold locally; every 50 ms add the folded counts and try a claim."""
    alerts = pages = folded = 0
    claims: list[dict[str, Any]] = []
    process, host = f"w{os.getpid()}", f"h{os.getpid() % 3}"
    time.sleep(max(0.0, start - time.time()))
    flushed = time.time()
    while time.time() < end:
        alerts += 1
        if store.observe(target, level=ERROR, window=WINDOW):
            pages += 1
        else:
            folded += 1
        if time.time() - flushed >= 0.05 or time.time() >= end:
            if folded:
                store.add(
                    target,
                    [KindDelta("k", ERROR, folded, "x", flushed, time.time())],
                    process=process,
                    host=host,
                )
            folded, flushed = 0, time.time()
            claim = store.claim(target, window=WINDOW, lease=5)
            if claim is not None:
                store.ack(target, claim.claim_id)
                claims.append({"id": claim.claim_id, "total": claim.total, "processes": claim.processes,
                               "again": claim.reoffered})  # fmt: skip
        time.sleep(0.002)
    if folded:
        store.add(
            target, [KindDelta("k", ERROR, folded, "x", flushed, time.time())], process=process, host=host
        )
    report = {"alerts": alerts, "pages": pages, "claims": claims}
    (out / f"{os.getpid()}.json").write_text(json.dumps(report))


def fork_check(url: str, target: str) -> None:
    """Print child-ok per child that used its own connection, then parent-ok if the parent's still works."""
    store = opened(url)
    store.observe(target, level=ERROR, window=60)
    parent = _connection_of(store)
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            ok = not store.observe(target, level=ERROR, window=60) and _connection_of(store) is not parent
            print("child-ok" if ok else "child-FAILED", flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
    ok = store.observe(target, level=50, window=60) and _connection_of(store) is parent
    print("parent-ok" if ok else "parent-FAILED", flush=True)


def _connection_of(store: Store) -> object:
    """The connection (SQLite) or client (Redis) the store uses in this process."""
    return getattr(store, "_db", None) or store._client  # type: ignore[attr-defined]


def claim_and_hang(url: str, target: str) -> None:
    """Claim a digest with a short lease, say so, then never acknowledge it (the test kills this process)."""
    claim = opened(url).claim(target, window=WINDOW, lease=0.3)
    assert claim is not None
    print(json.dumps({"id": claim.claim_id, "total": claim.total}), flush=True)
    time.sleep(RUN_TIMEOUT)


if __name__ == "__main__":
    {"hammer": hammer, "fork-check": fork_check, "claim-and-hang": claim_and_hang}[sys.argv[1]](*sys.argv[2:])
