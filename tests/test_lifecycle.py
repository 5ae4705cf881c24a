"""Interpreter exit and os.fork(), in real Python subprocesses paging a FakeSMNServer in this process."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from smn_alert.testing import FakeSMNServer

from .conftest import smn_environment

pytestmark = pytest.mark.subprocess

SCRIPTS = Path(__file__).parent / "scripts"
SIGN = "6be340e91e5241e4b5d85837e6709104"
NUMBERS = ["+8613800000001", "+8613800000002"]
#: Generous: a subprocess that hangs must fail the test, not the whole run.
RUN_TIMEOUT = 30.0
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform has no os.fork()")
needs_itimer = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="this platform has no setitimer()")


def environment(server: FakeSMNServer) -> dict[str, str]:
    """The child's environment: ours without any SMN settings, plus the fake server's."""
    return {**smn_environment(server, NUMBERS), "PYTHONUNBUFFERED": "1"}


def run(server: FakeSMNServer, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        env=environment(server),
        check=False,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def start(server: FakeSMNServer, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / script), *args],
        env=environment(server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reports(stdout: str) -> dict[str, dict[str, Any]]:
    """The JSON lines the scripts print about themselves, by who printed them."""
    found = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {report["who"]: report for report in found}


def texts(server: FakeSMNServer) -> list[str]:
    return [message.message for message in server.messages]


class TestExit:
    def test_error_then_normal_exit_is_paged(self, smn_server: FakeSMNServer) -> None:
        """A script that logs one error and simply ends has its page delivered before it exits."""
        done = run(smn_server, "error_then_exit.py")
        assert done.returncode == 0, done.stderr
        assert texts(smn_server) == ["ERROR app.script: nightly export failed"]
        assert smn_server.messages[0].endpoints == tuple(NUMBERS)
        assert done.stderr == ""

    def test_exit_never_hangs_when_smn_does_not_answer(self, smn_server: FakeSMNServer) -> None:
        """With SMN silent, the process exits within shutdown_timeout (+1.5 s) and says what was lost."""
        smn_server.delay(60)
        shutdown_timeout = 2.0
        process = start(smn_server, "error_then_exit.py", str(shutdown_timeout))
        try:
            assert process.stdout is not None and process.stdout.readline() == "logged\n"
            last_line = time.monotonic()
            _, stderr = process.communicate(timeout=RUN_TIMEOUT)
            took = time.monotonic() - last_line
        finally:
            process.kill()
            process.wait()
        assert process.returncode == 0, stderr
        assert took < shutdown_timeout + 1.5, f"exit took {took:.1f} s"
        assert "not paged" in stderr and "Traceback" not in stderr

    @pytest.mark.parametrize("flush_timeout", [None, "2.0"])
    def test_a_flush_then_exit_wait_one_deadline_not_two(
        self, smn_server: FakeSMNServer, flush_timeout: Optional[str]
    ) -> None:
        """gunicorn's worker_exit flush, then the exit-time close, with SMN hung: one shutdown_timeout."""
        smn_server.delay(60)
        shutdown_timeout = 2.0
        args = [str(shutdown_timeout)] + ([flush_timeout] if flush_timeout else [])
        process = start(smn_server, "flush_then_exit.py", *args)
        try:
            assert process.stdout is not None and process.stdout.readline() == "logged\n"
            logged = time.monotonic()
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
            took = time.monotonic() - logged
        finally:
            process.kill()
            process.wait()
        assert process.returncode == 0, stderr
        assert stdout == "flush gave up\n"
        assert took < shutdown_timeout + 1.0, f"flush and exit took {took:.1f} s"
        assert "1 alerts were not paged" in stderr and "Traceback" not in stderr

    def test_an_error_on_the_last_line_is_paged(self, smn_server: FakeSMNServer) -> None:
        """An error logged as the script's last line, folded behind an earlier page, still goes out."""
        done = run(smn_server, "last_line_error.py")
        assert done.returncode == 0, done.stderr
        paged = "\n".join(texts(smn_server))
        assert paged.count("first problem") == 1 and paged.count("last words before exit") == 1
        assert "carrying on" not in paged

    def test_an_error_logged_by_an_atexit_hook_is_paged(self, smn_server: FakeSMNServer) -> None:
        """The first alert comes from an atexit hook, during interpreter exit: it is still paged."""
        done = run(smn_server, "atexit_error.py")
        assert done.returncode == 0, done.stderr
        assert texts(smn_server) == ["CRITICAL app.script: dying in an atexit hook"]
        assert "Traceback" not in done.stderr

    def test_an_error_logged_by_an_earlier_exit_hook_is_paged(self, smn_server: FakeSMNServer) -> None:
        """An exit hook registered before smn_alert was imported runs after the pager closed: still paged."""
        done = run(smn_server, "early_atexit_error.py")
        assert done.returncode == 0, done.stderr
        assert texts(smn_server) == ["CRITICAL app.script: logged by an early exit hook (0)"]
        assert "not paged" not in done.stderr and "Traceback" not in done.stderr

    def test_errors_an_earlier_exit_hook_could_not_page_are_said(self, smn_server: FakeSMNServer) -> None:
        """More errors than the budget from such a hook: what is paged is paged, the rest said on stderr."""
        done = run(smn_server, "early_atexit_error.py", "40")
        assert done.returncode == 0, done.stderr
        paged = texts(smn_server)
        assert 1 <= len(paged) <= 6, paged  # the budget (5 per 10 minutes), one more overspent at shutdown
        assert paged[0] == "CRITICAL app.script: logged by an early exit hook (0)"
        said = [line for line in done.stderr.splitlines() if "logged after shutdown" in line]
        assert said and said[-1].startswith("smn_alert: ") and said[-1].endswith(" were not paged"), said
        assert "Traceback" not in done.stderr

    def test_an_earlier_exit_hook_error_with_smn_hung_keeps_to_the_deadline(
        self, smn_server: FakeSMNServer
    ) -> None:
        """With SMN silent, paging that late alert waits no longer than the close deadline, and says so."""
        smn_server.delay(60)
        started = time.monotonic()
        done = run(smn_server, "early_atexit_error.py", "1", "1.5")
        assert time.monotonic() - started < 1.5 + 2.0  # start-up, then at most the deadline
        assert done.returncode == 0, done.stderr
        assert "smn_alert: 1 alert logged after shutdown was not paged" in done.stderr.splitlines()

    def test_a_multiprocessing_child_pages_before_os_exit(self, smn_server: FakeSMNServer) -> None:
        """A multiprocessing (fork) child skips atexit by ending with os._exit; its alert is still paged."""
        if not hasattr(os, "fork"):
            pytest.skip("no os.fork on this platform")
        done = run(smn_server, "multiprocessing_child.py")
        assert done.returncode == 0, done.stderr
        assert texts(smn_server) == ["ERROR app.pool: task failed in a pool child"]

    @pytest.mark.parametrize("method", ["fork", "forkserver"])
    def test_a_pool_child_whose_parent_never_paged_is_closed_on_exit(
        self, smn_server: FakeSMNServer, method: str
    ) -> None:
        """A pager built inside a multiprocessing child sends its folded alert before os._exit."""
        if method not in multiprocessing.get_all_start_methods():
            pytest.skip(f"no {method} start method on this platform")
        done = run(smn_server, "multiprocessing_fresh_child.py", method)
        assert done.returncode == 0, done.stderr
        paged = "\n".join(texts(smn_server))  # one page or two: the worker may fold them together
        assert paged.count("first in the child") == 1 and paged.count("folded in the child") == 1

    def test_reconfiguring_logging_right_after_an_error_does_not_stall(
        self, smn_server: FakeSMNServer
    ) -> None:
        """dictConfig replacing a pager that is sending its first page: fast, and the page is delivered."""
        done = run(smn_server, "reconfigure.py")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["reconfigure_seconds"] < 2.0
        assert texts(smn_server) == ["ERROR app.boot: error during start-up"]
        assert "not paged" not in done.stderr

    def test_close_twice_is_harmless(self, smn_server: FakeSMNServer) -> None:
        """close() twice, a log after close, and logging.shutdown() at exit: no error, no hang, one page."""
        started = time.monotonic()
        done = run(smn_server, "close_twice.py")
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
        assert texts(smn_server) == ["ERROR app.script: closing time"]
        stats = json.loads(done.stdout)
        assert stats["sent"] == 1 and stats["received"] == 2
        assert time.monotonic() - started < 5.0

    def test_bad_configuration_fails_with_one_clear_error(self, smn_server: FakeSMNServer) -> None:
        """A bad number stops the application at start-up with a ValueError naming it, and nothing else."""
        done = run(smn_server, "bad_config.py")
        assert done.returncode == 1
        assert "ValueError: Unable to configure handler 'pager'" in done.stderr
        assert "endpoints[0]" in done.stderr
        assert "AttributeError" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
        assert smn_server.requests == []


@needs_fork
class TestFork:
    def test_child_pages_its_own_and_never_the_parents(self, smn_server: FakeSMNServer) -> None:
        """Forked with pages pending (one in flight, one folded), the child sends only its own alert."""
        smn_server.delay(0.5, n=1)
        process = start(smn_server, "fork_pending.py")
        try:
            assert process.stdout is not None and process.stdout.readline() == "logged\n"
            smn_server.wait_for_requests(1)  # the parent's first page is now in flight, held by the server
            stdout, stderr = process.communicate("go\n", timeout=RUN_TIMEOUT)
        finally:
            process.kill()
            process.wait()
        assert process.returncode == 0, stderr
        paged = texts(smn_server)
        for text in ("parent-one in flight", "parent-two folded", "child-own error"):
            assert sum(text in page for page in paged) == 1, paged
        child_pages = [page for page in paged if "child-own" in page]
        assert all("parent" not in page for page in child_pages)
        found = reports(stdout)
        assert found["child"]["flushed"] and found["child"]["stats"]["received"] == 1
        assert found["parent"]["flushed"] and found["parent"]["stats"]["received"] == 2
        assert found["parent"]["status"] == 0

    def test_prefork_workers_start_their_own_worker_thread(self, smn_server: FakeSMNServer) -> None:
        """Configured before fork, first alert only in the children: each child pages on its own thread.

        The parent's worker runs from construction; each child's is started by the fork hook.
        """
        done = run(smn_server, "prefork.py")
        assert done.returncode == 0, done.stderr
        assert sorted(texts(smn_server)) == [
            "ERROR app.worker: worker 0 crashed",
            "ERROR app.worker: worker 1 crashed",
        ]
        found = reports(done.stdout)
        for child in ("child-0", "child-1"):
            assert found[child]["flushed"] and found[child]["stats"]["received"] == 1
            assert "smn_alert-handler" in found[child]["threads"]
        assert found["parent"]["statuses"] == [0, 0]
        assert found["parent"]["threads"].count("smn_alert-handler") == 1
        assert found["parent"]["stats"]["received"] == 0


@needs_fork
class TestForkFromC:
    """uWSGI without --lazy-apps forks from C: os.register_at_fork never runs, the pid still changes."""

    def test_the_child_pages_its_own_error(self, smn_server: FakeSMNServer) -> None:
        """A child forked from C after the parent paged pages its own error, never the parent's, at once."""
        done = run(smn_server, "c_fork.py", "log")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["status"] == 0 and report["child_seconds"] < 2.5, report  # shutdown_timeout is 3 s
        paged = texts(smn_server)
        child_pages = [page for page in paged if "child error after a fork from C" in page]
        assert len(child_pages) == 1 and "parent" not in child_pages[0], paged
        assert sum("parent error folded" in page for page in paged) == 1, paged  # by the parent, at exit
        assert "not paged" not in done.stderr

    def test_a_quiet_child_exits_at_once(self, smn_server: FakeSMNServer) -> None:
        """A child forked from C that never logs exits at once, without waiting for the parent's thread."""
        done = run(smn_server, "c_fork.py", "quiet")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["status"] == 0 and report["child_seconds"] < 2.5, report
        assert "not paged" not in done.stderr
        assert sum("parent error folded" in page for page in texts(smn_server)) == 1


@needs_itimer
class TestSignals:
    def test_a_signal_handler_that_logs_never_deadlocks(self, smn_server: FakeSMNServer) -> None:
        """1,000 signals a second, whose handler logs an error, amid the main thread's errors: no deadlock."""
        storm = 3.0
        try:
            done = run(smn_server, "signal_storm.py", str(storm))
        except subprocess.TimeoutExpired:
            pytest.fail("the process deadlocked: a signal handler that logs interrupted the hand-over")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["interrupts"] > 100, report  # the handler did interrupt the main thread, often
        stats = report["stats"]
        assert stats["received"] == report["logged"] + report["interrupts"]
        parts = ("sent", "folded", "suppressed", "dropped", "failed", "pending")
        assert stats["received"] == sum(stats[part] for part in parts)
        paged = "\n".join(texts(smn_server))
        assert "error logged by the main loop" in paged and "error logged by a signal handler" in paged
