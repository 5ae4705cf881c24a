"""Shared state across real processes, through the real SMNHandler, paging a real FakeSMNServer.

Each worker is ``tests/scripts/fleet_worker.py`` in a fresh interpreter (forked workers as gunicorn's preload
makes them, independent processes, recycled and crash-looping ones, one killed by SIGKILL), sharing a
SQLite file under ``tmp_path`` or a real Redis server (``tests/redis_server.py``) that is stopped, frozen
and restarted mid-incident. What is asserted is what the on-call person and the operator see: the SMS at the
fake server (how many, what they say, counts that add up to every alert logged) and ``stats()``.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import pytest

from smn_alert._client_settings import ENV_SK
from smn_alert._store import ENV_SHARED_STATE, decode_claim, open_store
from smn_alert.testing import FakeSMNServer
from tests.redis_server import RedisServer

from .conftest import smn_environment

pytestmark = pytest.mark.subprocess
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform has no os.fork()")

WORKER = Path(__file__).parent / "scripts" / "fleet_worker.py"
#: Generous: a child that hangs must fail its test, not the run.
RUN_TIMEOUT = 30.0
PARTS = ("sent", "folded", "suppressed", "dropped", "failed", "pending", "handed")
#: The folding window the workers use, seconds: a worker pushes its counts once a second.
WINDOW = 2.0
#: The head of a page of several alerts: ``ERROR x1,999 in 2 s from 4 processes: ...``.
DIGEST = re.compile(r"^[A-Z]+ x([\d,]+)\b", re.MULTILINE)


# --- what the phone got -------------------------------------------------------------------------------------
def count_of(text: str, kind: str = "") -> int:
    """The alerts of ``kind`` (part of the text) an SMS stands for: its lines' counts, 1 for a first page."""
    lines = [(m[1], text[m.end() :].split("\n", maxsplit=1)[0]) for m in DIGEST.finditer(text)]
    found = [int(count.replace(",", "")) for count, rest in lines if kind in rest]
    return sum(found) if DIGEST.match(text) else int(kind in text)


def texts(server: FakeSMNServer) -> list[str]:
    return [message.message for message in server.messages]


def counted(server: FakeSMNServer) -> int:
    return sum(count_of(text) for text in texts(server))


def adds_up(stats: dict[str, Any]) -> bool:
    return bool(stats["received"] == sum(stats[name] for name in PARTS))


def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


# --- the workers --------------------------------------------------------------------------------------------
def environment(server: FakeSMNServer, url: str, **handler: Any) -> dict[str, str]:
    """A child's environment: the fake server's settings, ``shared_state`` and the handler's arguments."""
    handler = {"window": WINDOW, "shutdown_timeout": 3.0, **handler}
    env = {**smn_environment(server), ENV_SHARED_STATE: url, "FLEET_HANDLER": json.dumps(handler)}
    return {**env, "PYTHONUNBUFFERED": "1"}


def run(role: str, *args: Any, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(WORKER), role, *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def reports(out: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out.glob("*.json"))]


class Worker:
    """A ``fleet_worker.py serve`` process: one command a line, one JSON answer a line; stderr to a file."""

    def __init__(self, env: dict[str, str], stderr: Path) -> None:
        self.stderr = stderr
        with stderr.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER), "serve"],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip
        self.last = self._answer(RUN_TIMEOUT)

    def ask(self, command: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self.last = self._answer(timeout)
        return self.last

    def _answer(self, timeout: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        assert line, f"worker {self.process.pid} did not answer: {self.said()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def said(self) -> str:
        return self.stderr.read_text(errors="replace")

    def exit(self, code: int = 0) -> int:
        """Exit normally (atexit closes the handler); return the exit status. ``last``: the final report."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"exit {code}\n")
        self.process.stdin.close()
        self.last = self._answer(RUN_TIMEOUT)
        assert self.last.get("exited"), self.last
        return self.process.wait(RUN_TIMEOUT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(RUN_TIMEOUT)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Worker]]:
    """Start ``serve`` workers; any still running at the end is killed."""
    made: list[Worker] = []

    def make(env: dict[str, str]) -> Worker:
        made.append(Worker(env, tmp_path / f"worker-{len(made)}.err"))
        return made[-1]

    yield make
    for worker in made:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(RUN_TIMEOUT)
        for stream in (worker.process.stdin, worker.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the tests that never stop it (each test pages its own fake server: its own target)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: stopped, frozen and restarted."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    return str(request.getfixturevalue("shared_redis").url)


# --- 1. one incident, many workers --------------------------------------------------------------------------
class TestManyWorkersOneIncident:
    def check_one_incident(self, server: FakeSMNServer, children: list[dict[str, Any]], alerts: int) -> None:
        """One first page, digests counting every alert exactly once, the whole fleet named; stats add up.

        (A first page may count a few alerts, ``ERROR x43: ...``: those its worker found waiting at once.)
        Unshared, each process would send its own first page and digest: 8 SMS.
        """
        first, *digests = texts(server)
        assert " from " not in first and digests and len(digests) <= 2, texts(server)
        assert counted(server) == alerts, texts(server)
        assert any(" from 4 processes" in text for text in texts(server)), texts(server)
        assert all(adds_up(child["stats"]) for child in children), children
        assert sum(child["stats"]["received"] for child in children) == alerts
        assert sum(child["stats"]["pending"] + child["stats"]["failed"] for child in children) == 0

    @needs_fork
    def test_forked_workers_page_once(self, url: str, smn_server: FakeSMNServer, tmp_path: Path) -> None:
        """4 workers forked after the handler was built, 500 errors each, staying past the window."""
        env = {**environment(smn_server, url), "FLEET_START": str(time.time() + 0.5)}
        done = run("fork", 4, 500, WINDOW + 0.5, tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        self.check_one_incident(smn_server, reports(tmp_path), 2000)

    def test_independent_processes_page_once(
        self, url: str, smn_server: FakeSMNServer, workers: Callable[..., Worker]
    ) -> None:
        """4 interpreters started on their own, 500 errors each, then all exit: the last to leave sends.

        In two rounds of 250, so the first page (which may take all the first worker found waiting) leaves
        every process something to count in the digest.
        """
        fleet = [workers(environment(smn_server, url)) for _ in range(4)]
        for worker in fleet + fleet:
            worker.ask("log 250 payment gateway timed out (attempt %d)")
        assert [worker.exit() for worker in fleet] == [0] * 4
        self.check_one_incident(smn_server, [worker.last for worker in fleet], 2000)


def waiting_in_store(url: str) -> int:
    """Alerts in the store not paged yet (the one target these tests page): counted, or on a digest
    given back unsent (a process exiting with the budget spent leaves it for the next one)."""
    store = open_store(url)
    assert store is not None
    try:
        [target] = store.targets()
        waiting = int(store.status(target)["waiting"])
    finally:
        store.close()
    with closing(sqlite3.connect(url[len("sqlite://") :])) as db:
        payloads = db.execute("SELECT claim_id, payload FROM claims").fetchall()
    return waiting + sum(decode_claim(claim_id, payload, False).total for claim_id, payload in payloads)


# --- 2, 3. processes one after another ----------------------------------------------------------------------
class TestOneAfterAnother:
    def test_recycled_workers_share_one_first_page_and_one_budget(
        self, smn_server: FakeSMNServer, tmp_path: Path
    ) -> None:
        """8 short-lived workers in a row (gunicorn --max-requests): 20 errors each, a normal exit.

        Unshared, each would page its own first alert and send its digest at exit: 16 SMS, and a fresh
        budget each. Shared: one first page, and never more than the budget (2) in its period; what the
        budget holds back waits in the store for the next digest, every alert counted once. (The fleet's
        budget is never overspent at exit, unlike a lone process's last page.)
        """
        url = f"sqlite:///{tmp_path}/shared.db"
        env = environment(smn_server, url, window=60.0, budget=2, budget_period=600.0)
        out = tmp_path / "out"
        out.mkdir()
        done = run("serial", 8, "burst", 20, 0, out, env=env)
        assert (done.returncode, done.stdout.strip()) == (0, json.dumps([0] * 8)), done.stderr
        first, *digests = texts(smn_server)
        assert len(digests) <= 1 and all(DIGEST.match(text) for text in digests), texts(smn_server)
        assert count_of(first) + sum(map(count_of, digests)) + waiting_in_store(url) == 8 * 20
        children = reports(out)
        assert len(children) == 8 and all(adds_up(child["stats"]) for child in children)

    def test_a_crash_loop_pages_within_the_budget(self, smn_server: FakeSMNServer, tmp_path: Path) -> None:
        """10 starts in a row that each log a CRITICAL and exit(1): within the budget (3), not 10 pages."""
        url = f"sqlite:///{tmp_path}/shared.db"
        env = environment(smn_server, url, window=60.0, budget=3, budget_period=600.0)
        done = run("serial", 10, "crash", env=env)
        assert (done.returncode, done.stdout.strip()) == (0, json.dumps([1] * 10)), done.stderr
        assert 1 <= len(texts(smn_server)) <= 3, texts(smn_server)
        assert counted(smn_server) + waiting_in_store(url) == 10, texts(smn_server)


# --- 4. SIGKILL ---------------------------------------------------------------------------------------------
class TestKilled:
    def test_a_killed_workers_pushed_counts_reach_the_digest(
        self, smn_server: FakeSMNServer, workers: Callable[..., Worker], tmp_path: Path
    ) -> None:
        """B's 300 errors, folded into A's incident and pushed, outlive B's SIGKILL: A's digest has them."""
        env = environment(smn_server, f"sqlite:///{tmp_path}/shared.db")
        a, b = workers(env), workers(env)
        a.ask("log 1 payment gateway timed out (attempt %d)")
        smn_server.wait_for_messages(1)
        assert b.ask("log 300 payment gateway timed out (attempt %d)")["stats"]["received"] == 300
        assert b.ask("pushed 300 10")["ok"], b.said()
        b.kill()
        first, digest = smn_server.wait_for_messages(2, timeout=WINDOW + 5)  # A, alive, sends it
        assert count_of(first.message) == 1 and count_of(digest.message) == 300, texts(smn_server)
        assert a.exit() == 0 and len(smn_server.messages) == 2
        assert adds_up(a.last["stats"]) and a.last["stats"]["sent"] == 1

    def test_a_digest_claimed_by_a_killed_worker_is_sent_by_another(
        self, smn_server: FakeSMNServer, workers: Callable[..., Worker], tmp_path: Path
    ) -> None:
        """B claims the digest, is SIGKILLed while sending it; after the lease, A sends it (at least once)."""
        url = f"sqlite:///{tmp_path}/shared.db"
        env = {**environment(smn_server, url), "FLEET_LEASE": "1.5"}
        b = workers(env)
        b.ask("log 1 payment gateway timed out (attempt %d)")
        smn_server.wait_for_messages(1)
        smn_server.delay(RUN_TIMEOUT, n=1)  # B's digest hangs at SMN: B has claimed it, not acked it
        b.ask("log 100 payment gateway timed out (attempt %d)")
        smn_server.wait_for_requests(2, timeout=WINDOW + 5)
        b.kill()
        smn_server.reset_faults()
        a = workers(env)  # alive: at its next heartbeat (5 s) it is offered the expired claim
        smn_server.wait_for_messages(2, timeout=10)
        assert [count_of(text) for text in texts(smn_server)] == [1, 100], texts(smn_server)
        assert a.exit() == 0 and len(smn_server.messages) == 2


# --- 5. Redis stopped or hung mid-incident ------------------------------------------------------------------
DISK = "disk full on /var (try %d)"


@pytest.mark.parametrize("trouble", ["stopped", "hung"])
def test_redis_failing_never_stops_a_page(
    trouble: str, redis_server: RedisServer, smn_server: FakeSMNServer, workers: Callable[..., Worker]
) -> None:
    """Redis stopped (or frozen) mid-incident: each process pages a new kind itself, says so once, and its
    ``logger.error`` stays as cheap; when Redis answers again they share again, with no first page replayed.
    """
    env = environment(smn_server, redis_server.url, budget=20)
    a, b = workers(env), workers(env)
    a.ask("log 1 payment gateway timed out (attempt %d)")
    smn_server.wait_for_messages(1)
    assert b.ask("log 50 payment gateway timed out (attempt %d)") and b.ask("pushed 50 10")["ok"]
    redis_server.stop() if trouble == "stopped" else redis_server.pause()
    try:
        costs = [worker.ask(f"log 1000 {DISK}") for worker in (a, b)]
        assert all(worker.ask("degraded 5")["ok"] for worker in (a, b))
        eventually(lambda: sum("disk full" in text for text in texts(smn_server)) >= 2, 10, "each pages")
    finally:
        redis_server.start() if trouble == "stopped" else redis_server.resume()
    assert all(worker.ask("sharing 10")["ok"] for worker in (a, b)), a.said() + b.said()
    before = len(texts(smn_server))
    for worker in (a, b):
        worker.ask(f"log 20 {DISK}")
    assert [a.exit(), b.exit()] == [0, 0]
    assert sum(count_of(text, "disk full") for text in texts(smn_server)) == 2 * 1020, texts(smn_server)
    assert all(DIGEST.match(text) for text in texts(smn_server)[before:]), texts(smn_server)
    for worker in (a, b):
        said = worker.said()
        assert said.count("paging per process until the shared state answers again") == 1, said
        assert "answers again; sharing resumed" in said, said
        assert adds_up(worker.last["stats"])
    assert max(cost["median_us"] for cost in costs) < 1000, costs


# --- 6. a wrong key -----------------------------------------------------------------------------------------
def test_a_wrong_key_is_tried_once_by_the_fleet(
    smn_server: FakeSMNServer, workers: Callable[..., Worker], tmp_path: Path
) -> None:
    """4 processes with a wrong SK: the first refusal pauses them all; SMN (which locks a key after 5 bad
    signatures) sees it once or twice, not once per process, even for a CRITICAL each would page alone."""
    env = {**environment(smn_server, f"sqlite:///{tmp_path}/shared.db"), ENV_SK: "wrong-" + "s" * 34}
    fleet = [workers(env) for _ in range(4)]
    fleet[0].ask("log 1 payment gateway timed out (attempt %d)")
    smn_server.wait_for_requests(1)
    assert all(worker.ask("paused 5")["ok"] for worker in fleet)
    for worker in fleet[1:]:
        worker.ask("critical database is gone")
    assert [worker.exit() for worker in fleet] == [0] * 4
    assert smn_server.messages == [] and 1 <= len(smn_server.requests) <= 2, smn_server.requests
    assert {request.status for request in smn_server.requests} == {401}
