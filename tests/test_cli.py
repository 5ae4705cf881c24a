"""Tests for the ``smn-alert`` command: demo, send and check against FakeSMNServer only; status against a real
SQLite file and a real Redis server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smn_alert import _cli as cli
from smn_alert._cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, main
from smn_alert._demo import DEMO_NUMBERS
from smn_alert._store import ENV_SHARED_STATE, KindDelta, Store, open_store
from smn_alert._text import count_segments
from smn_alert.testing import FakeSMNServer
from tests.redis_server import RedisServer

SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
NUMBER, OTHER = "+8613800000001", "+8613900000002"
TOPIC = "urn:smn:cn-north-4:0f1e2d3c4b5a69788796a5b4c3d2e1f0:oncall"
# Every variable the command reads: each test starts from none of them set, as on a fresh machine.
VARIABLES = [name for _, _, name in cli._ROWS]
ENVIRONMENT = {
    "project_id": "HUAWEICLOUD_SDK_PROJECT_ID",
    "endpoint_url": "SMN_ALERT_ENDPOINT_URL",
    "ak": "HUAWEICLOUD_SDK_AK",
    "sk": "HUAWEICLOUD_SDK_SK",
}


def clean_environment() -> dict[str, str]:
    """The test process's environment without any smn_alert or Huawei Cloud setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SMN_ALERT_", "HUAWEICLOUD_SDK_"))}


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No smn_alert or Huawei Cloud variable set."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def server(fresh: pytest.MonkeyPatch) -> Iterator[FakeSMNServer]:
    """A FakeSMNServer whose credentials and URL are in the environment, as a user would export them."""
    with FakeSMNServer() as fake:
        for name, value in fake.settings().items():
            fresh.setenv(ENVIRONMENT[name], value)
        yield fake


def one_line(text: str) -> str:
    """Assert ``text`` is exactly one ``smn-alert: error:`` line without a traceback; return it."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("smn-alert: error: ")
    assert "Traceback" not in text
    return lines[0]


def run_demo(*prefix: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *prefix] if prefix else [sys.executable, "-m", "smn_alert", "demo"]
    env = clean_environment()
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def demo() -> tuple[subprocess.CompletedProcess[str], float]:
    """One run of ``python -m smn_alert demo`` with a clean environment, and how long it took."""
    started = time.monotonic()
    result = run_demo()
    return result, time.monotonic() - started


def acts(output: str) -> tuple[str, str]:
    """The demo's output split into act 1 (one process, replayed) and act 2 (the fleet)."""
    first, fleet = output.split("\nAct 2: ")
    return first, fleet


def sms_blocks(output: str) -> list[tuple[int, str]]:
    """The SMS the demo printed: (segments it says, text as printed with its '  | ' margin removed)."""
    blocks = re.findall(r"(\d+) billed segment\(s\)[^\n]*\n((?:  \| [^\n]*\n)+)", output)
    return [(int(n), "\n".join(line[4:] for line in text.splitlines())) for n, text in blocks]


@pytest.mark.subprocess
class TestDemo:
    def test_it_finishes_fast_and_exits_zero(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """`smn-alert demo` needs no credentials, exits 0 and takes seconds, not minutes."""
        result, elapsed = demo
        assert result.returncode == EXIT_OK, result.stderr
        assert result.stderr == ""
        assert elapsed < 30

    def test_phones_get_a_first_page_digests_and_the_budget_note(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """Act 1: the first page, a digest with counts, the crash, and what the budget held back."""
        texts = [text for _, text in sms_blocks(acts(demo[0].stdout)[0])]
        assert texts[0] == "shop ERROR shop.payments: charge failed for order A-1042: card said 502"
        assert any(
            "ERROR x2,160 in 40 s: shop.db: query on orders timed out (TimeoutError)" in t for t in texts
        )
        assert any(t.startswith("shop CRITICAL shop.worker: order worker crashed | KeyError") for t in texts)
        assert "held back" in texts[-1] and "181" in texts[-1] and "(SMS budget)" in texts[-1]

    def test_act_one_pages_alone_and_says_so(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """The single-process scenes share nothing, and the settings line says so."""
        first = acts(demo[0].stdout)[0]
        assert 'shared_state="process"' in first
        assert re.search(r"^  handed +0  ", first, re.MULTILINE)
        assert "from 2 processes" not in first and "SMNProcessor.stats(): received 1, sent 1" in first

    def test_the_fleet_gets_one_first_page_and_one_digest_from_4_processes(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """Act 2: 4 forked workers log one incident; the phones get ONE first page and a digest of all."""
        fleet = acts(demo[0].stdout)[1]
        first, *digests = [text for _, text in sms_blocks(fleet)]  # one phone's (the other's: the same)
        assert first == "shop ERROR shop.db: query on orders timed out"
        assert len(digests) == 1 and "from 4 processes: shop.db: query on orders timed out" in digests[0]
        counted = 1 + sum(int(n.replace(",", "")) for n in re.findall(r"\bx([\d,]+)", digests[0]))
        assert counted == 4 * 50
        assert "(the same 2 SMS as +86138****0001)" in fleet

    def test_the_fleet_counts_add_up_in_every_worker(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """Each worker's stats() add up; one worker sent the first page, the others handed everything."""
        fleet = acts(demo[0].stdout)[1]
        workers = re.findall(r"^  pid \d+ +received (\d+) = (.+)$", fleet, re.MULTILINE)
        assert len(workers) == 4
        for received, parts in workers:
            assert int(received) == sum(int(part.split()[-1]) for part in parts.split(" + "))
        assert sum("sent 1" in parts for _, parts in workers) == 1
        assert "1 first page(s) and 1 digest(s): 200 alerts counted of 200 logged by 4 processes" in fleet

    def test_every_page_fits_and_says_its_true_segment_count(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """Each SMS shown is at most 490 characters, and the segments printed are what SMN bills."""
        blocks = sms_blocks(demo[0].stdout)
        assert len(blocks) >= 6  # act 1's and act 2's
        for segments, text in blocks:
            assert len(text) <= 490
            assert segments == count_segments(text, ucs2=True)  # +86 numbers always bill as UCS-2

    def test_nothing_secret_or_whole_numbers_on_screen(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """The password logged in the incident and the full phone numbers never reach the terminal."""
        out = demo[0].stdout
        assert "hunter2" not in out and "password=***" in out
        assert all(number not in out for number in DEMO_NUMBERS)
        assert "+86138****0001" in out

    def test_counters_are_explained_and_add_up(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """Every counter has its one-line meaning, and received equals the sum of where alerts went."""
        out = acts(demo[0].stdout)[0]
        for name in ("received", "sent", "folded", "suppressed", "dropped", "failed", "pending", "handed"):
            assert re.search(rf"^  {name} +[\d,]+  \w", out, re.MULTILINE), name
        received, parts = re.search(r"^  ([\d,]+) = ([\d, +]+)$", out, re.MULTILINE).groups()  # type: ignore[union-attr]
        assert int(received.replace(",", "")) == sum(int(p.replace(",", "")) for p in parts.split(" + "))
        assert int(received.replace(",", "")) > 3000

    def test_plain_text_when_not_a_terminal(
        self, demo: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        """Piped output has no colour codes."""
        assert "\033[" not in demo[0].stdout

    def test_it_works_without_structlog(self) -> None:
        """Without structlog installed, the demo still runs on the standard library alone."""
        code = (
            "import sys; sys.modules['structlog'] = None; "
            "from smn_alert._cli import main; sys.exit(main(['demo']))"
        )
        result = run_demo("-c", code)
        assert result.returncode == EXIT_OK, result.stderr
        assert "SMNProcessor" not in result.stdout
        assert "shop.payments: charge failed" in result.stdout


class TestSend:
    def test_all_numbers_get_it(self, server: FakeSMNServer, capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 0 when every number got the page; the output masks the numbers."""
        assert main(["send", "--to", NUMBER, "--to", OTHER, "--sign-id", SIGN_ID, "db down"]) == EXIT_OK
        [message] = server.messages
        assert (message.endpoints, message.message, message.sign_id) == ((NUMBER, OTHER), "db down", SIGN_ID)
        out = capsys.readouterr().out
        assert out.count("sent") == 2 and "+86138****0001" in out and NUMBER not in out

    def test_with_a_signature_instead_of_a_sign_id(self, server: FakeSMNServer) -> None:
        """--signature pages in flag mode: the 【sign】 heads the text and the flag is "true"."""
        assert main(["send", "--to", NUMBER, "--signature", "【XX商城】", "db down"]) == EXIT_OK
        [message] = server.messages
        assert (message.message, message.sign_id) == ("【XX商城】db down", None)
        assert message.message_include_sign_flag == "true"

    def test_some_refused(self, server: FakeSMNServer, capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 1 when SMN refused some numbers; the refused number and its code are shown."""
        server.refuse(OTHER, "SMN.0160")
        assert main(["send", "--to", NUMBER, "--to", OTHER, "--sign-id", SIGN_ID, "db down"]) == EXIT_REFUSED
        assert re.search(r"refused\s+\+86139\*\*\*\*0002\s+SMN\.0160", capsys.readouterr().out)

    def test_all_refused(self, server: FakeSMNServer, capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 2 with one error line when no number got the page."""
        server.refuse(NUMBER)
        assert main(["send", "--to", NUMBER, "--sign-id", SIGN_ID, "db down"]) == EXIT_FAILED
        assert "refused every number" in one_line(capsys.readouterr().err)

    def test_numbers_and_sign_from_the_environment(
        self, server: FakeSMNServer, fresh: pytest.MonkeyPatch
    ) -> None:
        """Without --to and --sign-id, SMN_ALERT_ENDPOINTS and SMN_ALERT_SIGN_ID are used."""
        fresh.setenv("SMN_ALERT_ENDPOINTS", f"{NUMBER},{OTHER}")
        fresh.setenv("SMN_ALERT_SIGN_ID", SIGN_ID)
        assert main(["send", "hello"]) == EXIT_OK
        assert server.messages[0].endpoints == (NUMBER, OTHER)

    def test_topic(self, server: FakeSMNServer, capsys: pytest.CaptureFixture[str]) -> None:
        """--topic publishes to the topic instead of SMS to numbers."""
        assert main(["send", "--topic", TOPIC, "db down"]) == EXIT_OK
        assert server.messages[0].topic_urn == TOPIC
        assert "published" in capsys.readouterr().out

    @pytest.mark.parametrize(
        ("argv", "says"),
        [
            (["--to", "call-me", "--sign-id", SIGN_ID, "x"], "endpoints[0]='call-me'"),
            (["--to", NUMBER, "--sign-id", SIGN_ID, "x" * 491], "491 characters"),
            (["--to", NUMBER, "x"], "sign_id"),
            (["x"], "SMN_ALERT_ENDPOINTS"),
            (["--to", NUMBER, "--topic", TOPIC, "--sign-id", SIGN_ID, "x"], "not both"),
        ],
    )
    def test_bad_input_sends_nothing(
        self, server: FakeSMNServer, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
    ) -> None:
        """Bad input exits 2 with one line naming the problem, and nothing is sent."""
        assert main(["send", *argv]) == EXIT_FAILED
        assert says in one_line(capsys.readouterr().err)
        assert server.requests == []

    def test_wrong_credentials(
        self, server: FakeSMNServer, fresh: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A refused signature exits 2, says so in one line, and never prints the secret key."""
        fresh.setenv("HUAWEICLOUD_SDK_SK", "not-the-right-secret-key")
        assert main(["send", "--to", NUMBER, "--sign-id", SIGN_ID, "db down"]) == EXIT_FAILED
        captured = capsys.readouterr()
        assert "credentials" in one_line(captured.err) and "APIG.0301" in captured.err
        assert "not-the-right-secret-key" not in captured.out + captured.err

    def test_smn_unreachable(self, fresh: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """No server listening: exit 2 with one line saying SMN cannot be reached."""
        with FakeSMNServer() as gone:
            settings = gone.settings()
        for name, value in settings.items():
            fresh.setenv(ENVIRONMENT[name], value)
        assert main(["send", "--to", NUMBER, "--sign-id", SIGN_ID, "db down"]) == EXIT_FAILED
        assert "cannot reach SMN" in one_line(capsys.readouterr().err)

    def test_unexpected_errors_are_one_line(
        self, server: FakeSMNServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Even a bug shows as one line, not a traceback."""

        def broken(*args: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(cli, "_deliver", broken)
        assert main(["send", "--to", NUMBER, "--sign-id", SIGN_ID, "x"]) == EXIT_FAILED
        assert one_line(capsys.readouterr().err) == "smn-alert: error: unexpected RuntimeError: boom"


class TestCheck:
    def test_fresh_machine_lists_everything_missing(
        self, fresh: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With nothing set, check exits 2 and names each variable to set."""
        assert main(["check"]) == EXIT_FAILED
        out = capsys.readouterr().out
        problems = [line for line in out.splitlines() if line.strip().startswith("problem")]
        assert len(problems) == 4
        for name in (
            "HUAWEICLOUD_SDK_PROJECT_ID",
            "HUAWEICLOUD_SDK_REGION",
            "HUAWEICLOUD_SDK_AK",
            "SMN_ALERT_ENDPOINTS",
        ):
            assert name in "\n".join(problems)

    def test_ok_masks_secrets_and_sends_nothing(
        self, server: FakeSMNServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A complete configuration exits 0, says where each value came from, hides secrets, sends nothing."""
        assert main(["check", "--to", NUMBER, "--sign-id", SIGN_ID]) == EXIT_OK
        out = capsys.readouterr().out
        sk, ak = server.settings()["sk"], server.settings()["ak"]
        assert sk not in out and ak not in out and NUMBER not in out
        assert re.search(rf"ak +{ak[:4]}\*\*\*\* +HUAWEICLOUD_SDK_AK", out)
        assert re.search(r"endpoints +\+86138\*\*\*\*0001 +--to", out)
        assert f"OK: ready to page 1 number(s) through {server.url}" in out
        assert server.requests == []

    def test_send_test_sends_one_page(self, server: FakeSMNServer) -> None:
        """--send-test sends exactly one test page."""
        assert main(["check", "--to", NUMBER, "--sign-id", SIGN_ID, "--send-test"]) == EXIT_OK
        [message] = server.messages
        assert message.message.startswith("smn-alert check: test page from ")

    def test_send_test_refused_is_not_ok(self, server: FakeSMNServer) -> None:
        """A test page some number did not get makes check exit 2."""
        server.refuse(OTHER)
        assert (
            main(["check", "--to", NUMBER, "--to", OTHER, "--sign-id", SIGN_ID, "--send-test"]) == EXIT_FAILED
        )

    def test_malformed_value_is_named(
        self, server: FakeSMNServer, fresh: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A value that is set but wrong is reported with its name and value."""
        fresh.setenv("SMN_ALERT_ENDPOINTS", "+86 138 oops")
        fresh.setenv("SMN_ALERT_SIGN_ID", SIGN_ID)
        assert main(["check"]) == EXIT_FAILED
        assert "SMN_ALERT_ENDPOINTS" in capsys.readouterr().out


class TestCommandLine:
    @pytest.mark.parametrize(
        ("command", "mentions"),
        [("demo", "FakeSMNServer"), ("send", "--to"), ("check", "--send-test"), ("status", "--shared-state")],
    )
    def test_help_on_each_command(
        self, capsys: pytest.CaptureFixture[str], command: str, mentions: str
    ) -> None:
        """Each command has --help, which exits 0."""
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert mentions in capsys.readouterr().out

    @pytest.mark.parametrize("argv", [[], ["page"], ["send"], ["send", "--bogus", "x"]])
    def test_usage_errors_are_one_line(self, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
        """A usage mistake is one error line on stderr and exit status 2."""
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == EXIT_FAILED
        assert "--help" in one_line(capsys.readouterr().err)

    @pytest.mark.subprocess
    def test_python_dash_m(self) -> None:
        """`python -m smn_alert` is the same command."""
        result = subprocess.run(
            [sys.executable, "-m", "smn_alert", "--help"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0
        assert result.stdout.startswith("usage: smn-alert ")


def busy_target(store: Store, target: str) -> None:
    """Give ``target`` one of everything the status shows."""
    store.observe(target, level=50, window=120)
    store.add(target, [KindDelta("k1", 40, 2000, "", 1.0, 2.0), KindDelta("k2", 50, 160, "", 1.0, 2.0)],
              process="p1", host="h1", ttl=60)  # fmt: skip
    store.heartbeat(target, "p2", "h2", 60)
    store.spend(target, [(5, 600)])
    store.hold(target)
    store.open_circuit(target, 300, "SMN.0001 authentication failed")


class TestStatus:
    def status(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = main(["status", *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def test_each_target_is_one_block(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """A busy target shows every part of the fleet view; a quiet one shows its budget still spent."""
        url = f"sqlite://{tmp_path}/state.db"
        store = open_store(url)
        assert store is not None
        busy_target(store, "a" * 32)
        store.spend("b" * 32, [(5, 600)])
        store.close()
        code, out, err = self.status(capsys, "--shared-state", url)
        assert (code, err) == (EXIT_OK, "")
        assert out.startswith(f"smn-alert status: {url}\n2 target(s)\n")
        busy, quiet = out.split("\n\n")[1:]
        assert busy.splitlines() == [
            f"target {'a' * 32}",
            "  window     open at CRITICAL, ends in 2 min",
            "  waiting    2,160 alert(s) of 2 kind(s) for the next digest",
            "  leases     0 digest(s) claimed, not yet confirmed (0 expired)",
            f"  held back  since {time.strftime('%H:%M')}",
            "  budget     5/600: 4.0 left",
            "  circuit    OPEN for 5 min more: SMN.0001 authentication failed",
            "  processes  2 live on 2 host(s)",
        ]
        assert (
            "window     none: quiet" in quiet and "5/600: 4.0 left" in quiet and "circuit    closed" in quiet
        )

    def test_redis_from_the_environment_with_its_password_masked(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SMN_ALERT_SHARED_STATE names the store; the password never shows."""
        server = RedisServer(tmp_path, password="pw-Secret-123").start()
        try:
            store = open_store(server.url)
            assert store is not None
            busy_target(store, "c" * 32)
            store.close()
            monkeypatch.setenv(ENV_SHARED_STATE, server.url)
            code, out, err = self.status(capsys)
        finally:
            server.stop()
        assert (code, err) == (EXIT_OK, "")
        assert f"smn-alert status: redis://:***@127.0.0.1:{server.port}/0\n" in out
        assert f"target {'c' * 32}" in out and "2,160 alert(s) of 2 kind(s)" in out
        assert "pw-Secret-123" not in out

    def test_no_store_yet_is_not_created(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The default store (no setting) no process used yet: said, and reading it creates nothing."""
        monkeypatch.delenv(ENV_SHARED_STATE, raising=False)
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        code, out, _ = self.status(capsys)
        assert code == EXIT_OK and "no shared state yet" in out
        assert list(tmp_path.iterdir()) == []

    def test_an_empty_store_says_every_target_is_quiet(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        url = f"sqlite://{tmp_path}/state.db"
        store = open_store(url)
        assert store is not None
        store.heartbeat("d" * 32, "p", "h", 0.01)
        time.sleep(0.02)
        store.close()
        code, out, _ = self.status(capsys, "--shared-state", url)
        assert code == EXIT_OK and out.endswith("no target has state now: every one is quiet\n")

    @pytest.mark.parametrize("where", ["redis", "sqlite"])
    def test_an_unreadable_store_is_one_line(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
    ) -> None:
        """Redis refusing connections, or a SQLite path that is a directory: one line, exit 2, no secret."""
        if where == "redis":
            server = RedisServer(tmp_path, password="pw-Secret-123")  # never started: nothing listens
            url = server.url
        else:
            (tmp_path / "state.db").mkdir()
            url = f"sqlite://{tmp_path}/state.db"
        code, out, err = self.status(capsys, "--shared-state", url)
        assert (code, out) == (EXIT_FAILED, "")
        assert "cannot read the shared state" in one_line(err) and "pw-Secret-123" not in err

    @pytest.mark.parametrize(
        ("url", "said"), [("process", "nothing is shared"), ("mysql://x", "unknown kind of store")]
    )
    def test_a_store_that_is_not_one_is_one_line(
        self, capsys: pytest.CaptureFixture[str], url: str, said: str
    ) -> None:
        code, _, err = self.status(capsys, "--shared-state", url)
        assert code == EXIT_FAILED and said in one_line(err)
