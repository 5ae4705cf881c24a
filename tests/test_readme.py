"""Tests that every code block in README.md works as the README says, against FakeSMNServer."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from smn_alert._cli import build_parser
from smn_alert._cli import main as cli_main
from smn_alert._fleet import Decision, Fleet
from smn_alert._settings import CONNECTION_SETTINGS, PAGER_SETTINGS
from smn_alert._store import open_store
from smn_alert.testing import FakeSMNServer

from .conftest import smn_environment
from .test_examples import CONSOLE_CHECK, console_gaps

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = [
    (lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", README, re.MULTILINE | re.DOTALL)
]
DEMO_COMMAND = 'python3 -m venv .venv && .venv/bin/pip install -e ".[structlog]" && .venv/bin/smn-alert demo'
TEST_COMMAND = 'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/pytest'

# Runs one README block in a fresh interpreter, as a user's program would run it. A block that only defines
# LOGGING is given to dictConfig; the Celery block runs against a stand-in for celery.signals when Celery is
# not installed (it is not a dependency), logs what a Celery worker logs (its `ready.` line, a task's
# traceback), and its pool-child exit is played with os._exit, which skips atexit. Every block then has
# CONSOLE_CHECK look for a console next to each pager.
HARNESS = CONSOLE_CHECK + textwrap.dedent(
    """
    import json, logging, logging.config, os, runpy, sys, types
    kind, path = sys.argv[1], sys.argv[2]
    text = open(path, encoding="utf-8").read()
    log = logging.getLogger("readme.check")

    class Signal:
        def __init__(self):
            self.receivers = []
        def connect(self, receiver):
            self.receivers.append(receiver)
            return receiver
        def send(self, sender, **kwargs):  # as celery's: the sender first
            for receiver in self.receivers:
                receiver(signal=self, sender=sender, **kwargs)

    if kind == "json":
        logging.config.dictConfig(json.loads(text))
        log.error("README json block")
    elif kind == "yaml":
        import yaml
        logging.config.dictConfig(yaml.safe_load(text))
        log.error("README yaml block")
    elif kind == "ini":
        logging.config.fileConfig(path, disable_existing_loggers=False)
        log.error("README ini block")
    elif "celery.signals" in text:
        try:
            import celery.signals as signals
        except ImportError:
            signals = types.ModuleType("celery.signals")
            signals.setup_logging, signals.worker_process_shutdown = Signal(), Signal()
            sys.modules["celery"] = types.ModuleType("celery")
            sys.modules["celery.signals"] = signals
        runpy.run_path(path, run_name="tasks")
        signals.setup_logging.send(None, loglevel="INFO")
        assert logging.getLogger().handlers, "setup_logging did not configure logging"
        logging.getLogger("celery.worker.consumer.consumer").info("celery@worker1 ready.")
        try:
            {}["customer"]
        except KeyError:
            trace = logging.getLogger("celery.app.trace")
            trace.error("Task tasks.charge[7f3a] raised: KeyError", exc_info=True)
        log.error("README celery block")
        console_check()
        signals.worker_process_shutdown.send(None, pid=os.getpid(), exitcode=0)
        os._exit(0)
    else:
        namespace = runpy.run_path(path, run_name="__main__")
        if "LOGGING" in namespace:
            logging.config.dictConfig(namespace["LOGGING"])
            log.error("README LOGGING block")
    console_check()
    """
)


def blocks(*languages: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang in languages]


def block_id(body: str) -> str:
    skip = ("import ", "from ", "#", "@")
    first = next((line for line in body.splitlines() if line.strip() and not line.startswith(skip)), "")
    return re.sub(r"\W+", "-", first)[:40]


def environment(server: FakeSMNServer) -> dict[str, str]:
    """A fresh environment whose credentials and URL point at ``server``, as a user would export them."""
    return smn_environment(server)


def run_block(kind: str, body: str, tmp_path: Path) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Run a README block against a fresh FakeSMNServer; return the SMS texts it received, and the run."""
    path = tmp_path / f"block.{kind}"
    path.write_text(body, encoding="utf-8")
    with FakeSMNServer() as server:
        command = [sys.executable, "-c", HARNESS, kind, str(path)]
        env = environment(server)
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        return [message.message for message in server.wait_for_messages(1)], result


@pytest.mark.subprocess
class TestCodeBlocks:
    @pytest.mark.parametrize("body", [b for b in blocks("python") if "def test_" not in b], ids=block_id)
    def test_python_block_pages(self, body: str, tmp_path: Path) -> None:
        """Each Python block, run as a program with credentials in the environment, sends a page, and
        every logger it pages from also writes to the console."""
        texts, result = run_block("python", body, tmp_path)
        assert all(len(text) <= 490 for text in texts)
        assert console_gaps(result) == []

    @pytest.mark.parametrize("kind", ["json", "yaml", "ini"])
    def test_config_blocks_configure_a_working_pager(self, kind: str, tmp_path: Path) -> None:
        """Each JSON, YAML and INI block, given to dictConfig or fileConfig, pages an ERROR and shows it on
        the console."""
        [body] = blocks(kind)
        texts, result = run_block(kind, body, tmp_path)
        assert any(f"README {kind} block" in text for text in texts)
        assert f"README {kind} block" in result.stderr
        assert console_gaps(result) == []

    def test_celery_block_keeps_celerys_own_console_output(self, tmp_path: Path) -> None:
        """With the Celery recipe, the worker's `ready.` line and a task's traceback still reach the
        console, and the task's error is paged."""
        [body] = [b for b in blocks("python") if "celery.signals" in b]
        texts, result = run_block("python", body, tmp_path)
        assert "celery@worker1 ready." in result.stderr
        assert "Task tasks.charge[7f3a] raised: KeyError" in result.stderr
        assert "Traceback (most recent call last):" in result.stderr
        assert any("celery.app.trace: Task tasks.charge(7f3a) raised: KeyError" in text for text in texts)

    def test_pytest_blocks_pass(self, tmp_path: Path) -> None:
        """The testing examples (smn_server fixture, RecordingSender) pass in a project of their own."""
        bodies = [b for b in blocks("python") if "def test_" in b]
        assert len(bodies) == 2
        for index, body in enumerate(bodies):
            (tmp_path / f"test_alerting_{index}.py").write_text(body, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMN_ALERT_", "HUAWEICLOUD_SDK_"))}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."]
        result = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 passed" in result.stdout

    def test_every_block_has_a_known_language(self) -> None:
        """No code block escapes these tests by having an unexpected (or no) language tag."""
        assert {lang for lang, _ in BLOCKS} <= {"python", "json", "yaml", "ini", "sh", "text", "console"}


@pytest.fixture(scope="module")
def demo_texts() -> list[str]:
    """The SMS texts `smn-alert demo` shows, with their '  | ' margin removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMN_ALERT_", "HUAWEICLOUD_SDK_"))}
    command = [sys.executable, "-m", "smn_alert", "demo"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    found = re.findall(r"billed segment\(s\)[^\n]*\n((?:  \| [^\n]*\n)+)", result.stdout)
    return ["\n".join(line[4:] for line in text.splitlines()) for text in found]


@pytest.mark.subprocess
class TestSampleSMS:
    @pytest.mark.parametrize("body", blocks("text"), ids=block_id)
    def test_sample_is_what_the_demo_sends(self, body: str, demo_texts: list[str]) -> None:
        """Each sample SMS in the README is a real page of the demo (clock times and line numbers aside)."""

        def normal(text: str) -> str:
            return re.sub(r"\b\d\d:\d\d\b", "HH:MM", re.sub(r"\.py:\d+ ", ".py:N ", text.strip()))

        assert normal(body) in [normal(text) for text in demo_texts], "re-paste it from `smn-alert demo`"


class TestShellBlocks:
    def test_readme_starts_with_the_two_commands(self) -> None:
        """The first code block is exactly the demo command and the test command."""
        assert BLOCKS[0] == ("sh", f"{DEMO_COMMAND}\n{TEST_COMMAND}\n")
        assert README.startswith(f"# smn-alert\n\n```sh\n{DEMO_COMMAND}\n{TEST_COMMAND}\n```\n")

    def test_ci_runs_the_readme_test_command(self) -> None:
        """.ci/run runs the README's test command verbatim."""
        assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    def test_extras_and_script_exist(self) -> None:
        """The extras the commands install and the smn-alert script are declared in pyproject.toml."""
        pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
        for extra in re.findall(r'"\.\[(\w+)\]"', "\n".join(blocks("sh"))):
            assert re.search(rf"^{extra} = \[", pyproject, re.MULTILINE), extra
        assert 'smn-alert = "smn_alert._cli:main"' in pyproject

    @pytest.mark.parametrize(
        "line", [ln for b in blocks("sh") for ln in b.splitlines() if ln.startswith("smn-alert ")], ids=str
    )
    def test_smn_alert_commands_parse(self, line: str) -> None:
        """Every `smn-alert ...` line in the README is valid for the real command-line parser."""
        build_parser().parse_args(shlex.split(line)[1:])

    def test_exported_variables_are_read_by_smn_alert(self) -> None:
        """Every variable the README tells you to export is one smn_alert reads."""
        source = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "smn_alert").glob("*.py"))
        names = re.findall(r"^export (\w+)=", "\n".join(blocks("sh")), re.MULTILINE)
        assert names
        assert [name for name in names if f'"{name}"' not in source] == []

    def test_referenced_files_exist(self) -> None:
        """Every examples/ file the README mentions exists."""
        for name in set(re.findall(r"examples/[\w.]+\.py", README)):
            assert (ROOT / name).is_file(), name


class TestReference:
    def test_every_setting_is_in_the_table(self) -> None:
        """The settings table has a row for every setting the library accepts."""
        rows = re.findall(r"^\| `(\w+)` \|", README, re.MULTILINE)
        assert set(CONNECTION_SETTINGS) | set(PAGER_SETTINGS) <= set(rows)

    @pytest.mark.parametrize(
        ("setting", "default"),
        [
            ("max_length", 490),
            ("budget", 5),
            ("budget_period", 600),
            ("window", 300),
            ("capacity", 10_000),
            ("shutdown_timeout", 5),
            ("max_retry_age", 900),
            ("circuit_cooldown", 300),
        ],
    )
    def test_defaults_match_the_library(self, setting: str, default: int) -> None:
        """The defaults the table states are the ones the library uses."""
        from smn_alert._settings import PagerSettings

        resolved = PagerSettings.from_kwargs(environ={}, endpoints="+8613800000000", sign_id="abc")
        assert getattr(resolved, setting) == default
        assert re.search(rf"^\| `{setting}` \| [^|]* \| `{default}` \|", README, re.MULTILINE)

    def test_environment_column_names_real_variables(self) -> None:
        """Every variable in the table's environment column is one smn_alert reads."""
        source = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "smn_alert").glob("*.py"))
        names = re.findall(r"^\| `\w+` \| `(\w+)` \|", README, re.MULTILINE)
        assert len(names) >= 9
        assert [name for name in names if f'"{name}"' not in source] == []

    def test_uwsgi_advice_names_the_fork_hooks_option(self) -> None:
        """uWSGI forks from C: the pre-fork section says how to have Python's fork hooks run."""
        section = README.split("## Many processes, many hosts", 1)[1].split("\n## ", 1)[0]
        assert "`--py-call-uwsgi-fork-hooks`" in section and "os.register_at_fork" in section

    def test_contents_links_resolve(self) -> None:
        """Every #anchor link points at a heading."""
        slugs = {
            re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", README, re.MULTILINE)
        }
        assert set(re.findall(r"\]\(#([\w-]+)\)", README)) <= slugs

    def test_benchmark_figures_come_from_one_recorded_run(self) -> None:
        """The README's figures are rows of the run recorded in benchmarks/README.md; a MISS is not hidden:
        every target missed is shown in the table and owned up to in the text below it, with its figure."""
        section = README.split("## Benchmarks", 1)[1]
        rows = [
            line
            for line in section.splitlines()
            if line.startswith("| ") and ("PASS" in line or "MISS" in line)
        ]
        recorded = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
        assert len(rows) >= 6 and all(row in recorded for row in rows) and "Machine:" in recorded
        missed = [line for line in recorded.splitlines() if line.startswith("| ") and "| MISS" in line]
        prose = " ".join(line for line in section.splitlines() if not line.startswith("|"))
        for line in missed:
            assert line in rows, f"a missed target left out of the README: {line}"
            figure = line.split("|")[3].strip()
            assert figure in prose, f"the README's text does not own up to {figure}"


# Every shared_state value the README shows: in a URL scheme the store knows, or the word `process`.
SHARED_STATE_FORMS = re.compile(r"\b(?:sqlite|rediss?|unix)://[^\s`'\"|)]+")


class TestSharedState:
    def test_no_advice_to_divide_the_budget(self) -> None:
        """With shared state the budget is the fleet's: the README never tells you to divide it."""
        text = " ".join(README.split())
        assert not re.search(r"(?i)divid\w*[^.:]{0,60}budget|budget[^.:]{0,60}divid|divide again", text)
        assert not re.search(r"(?i)each process has its own (?:SMS )?budget", text)

    def test_every_shared_state_form_shown_is_accepted(self) -> None:
        """Each `shared_state` value in the README is one open_store accepts (parsed only: nothing connects);
        every kind of store is shown."""
        forms = set(SHARED_STATE_FORMS.findall(README))
        assert {form.partition("://")[0] for form in forms} == {"sqlite", "redis", "rediss", "unix"}
        for form in sorted(forms):
            if "..." in form or "[" in form:  # a pattern such as rediss://... or redis://[user:password@]...
                continue
            store = open_store(form)
            assert store is not None, form
            store.close()
        assert "`process`" in README and open_store("process") is None

    def test_status_sample_is_what_the_command_prints(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The sample of `smn-alert status` is the real command's output for a store in that state (three
        processes on two hosts handed 2,103 alerts of one kind; one page spent), target and path aside."""
        [sample] = blocks("console")
        url = f"sqlite://{tmp_path}/smn.db"
        store = open_store(url)
        assert store is not None
        target = "0" * 32
        for index, count in enumerate((700, 701, 702)):
            fleet = Fleet(
                store, target, window=300, lease=30, buckets=[(5, 600), (99, 43200)], circuit_cooldown=300,
                process=f"p{index}", host=f"web-{index % 2}",
            )  # fmt: skip
            if fleet.first(logging.ERROR) is Decision.PAGE:
                assert fleet.spend() == 0.0
            fleet.hand("kind", logging.ERROR, count, "", time.time(), time.time())
            fleet.sync(force=True)
        store.close()
        assert cli_main(["status", "--shared-state", url]) == 0
        printed = capsys.readouterr().out

        def normal(text: str) -> str:
            text = re.sub(r"sqlite:///\S+", "sqlite:///PATH", text)
            return re.sub(r"target [0-9a-f]{32}", "target HASH", text).strip()

        assert normal(printed) == normal(sample)
