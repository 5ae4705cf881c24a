"""Tests that every file in examples/ runs on a fresh machine and pages a FakeSMNServer."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from smn_alert import SMNHandler
from smn_alert._settings import PagerSettings
from smn_alert._smn import LONG_WINDOW
from smn_alert._store import ENV_SHARED_STATE, open_store
from smn_alert.testing import FakeClock, FakeSMNServer

from .conftest import NUMBERS, SIGN_ID, RecordingSender, fresh_environment, smn_environment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The top-level keys of gunicorn.glogging.CONFIG_DEFAULTS, which gunicorn shallow-updates with logconfig_dict.
GUNICORN_DEFAULT_KEYS = {"version", "disable_existing_loggers", "root", "loggers", "handlers", "formatters"}

#: SMN's limits per number (SMN.0057, shared/docs/smn-api.md): at most this many SMS in any so many seconds.
SMN_PER_NUMBER_LIMITS = {3600.0: 60, LONG_WINDOW: 200}
#: Keys of a dictConfig handler entry that dictConfig itself takes; the rest go to the handler's class.
DICTCONFIG_OWN_KEYS = {"class", "formatter", "filters"}

# Appended to a program that configured logging. On every logger that holds an SMNHandler, and in structlog
# when an SMNProcessor is in its chain, it logs a WARNING (below every pager's level: nothing is paged) and
# prints where it did. Each warning must then be on stdout or stderr: a recipe keeps a console next to the
# pager, so what is paged (and what is not, such as Celery's `ready.` line) still shows where it did before.
CONSOLE_CHECK = textwrap.dedent(
    """
    def console_check():
        import logging, sys
        from smn_alert import SMNHandler, SMNProcessor
        manager = logging.Logger.manager
        loggers = [logging.getLogger()] + [
            obj for obj in manager.loggerDict.values() if isinstance(obj, logging.Logger)
        ]
        paged = []
        for logger in loggers:
            if any(isinstance(handler, SMNHandler) for handler in logger.handlers):
                paged.append(logger.name)
                logger.warning("console check on %s", logger.name)
        structlog = sys.modules.get("structlog")
        if structlog is not None:
            if any(isinstance(p, SMNProcessor) for p in structlog.get_config()["processors"]):
                paged.append("structlog")
                structlog.get_logger().warning("console check on structlog")
        print("PAGERS ON:", ",".join(paged), flush=True)
    """
)


def console_gaps(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The pagers of a run of CONSOLE_CHECK whose logger's warning reached neither stdout nor stderr."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("PAGERS ON: ")]
    assert len(lines) == 1, result.stdout + result.stderr
    names = [name for name in lines[0][len("PAGERS ON: ") :].split(",") if name]
    assert names, "no pager found: nothing was checked"
    console = result.stdout + result.stderr
    return [name for name in names if f"console check on {name}" not in console]


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module, without running its ``__main__`` part."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def most_sms(settings: PagerSettings, seconds: float) -> float:
    """The most SMS one budget can send to a number in any ``seconds``: a process's, or the fleet's when
    processes share state.

    Each bucket of the budget starts full and refills while it is spent, so it yields at most its capacity
    plus what refills in ``seconds``; a page takes a token from every bucket, so the smallest such bound
    holds; and the last page at shutdown goes out even with the budget spent: one more.
    """
    buckets = [(settings.budget, settings.budget_period), (settings.budget_12h, LONG_WINDOW)]
    return min(capacity * (1 + seconds / period) for capacity, period in buckets) + 1


pytestmark = pytest.mark.subprocess


def pointing_at(server: FakeSMNServer) -> dict[str, str]:
    """A fresh environment whose credentials, URL and on-call number point at ``server``."""
    return smn_environment(server)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=EXAMPLES,
    )


class TestExamplesRun:
    @pytest.mark.parametrize(
        ("name", "paged"),
        [
            (
                "dictconfig_json.py",
                "shop ERROR shop.payments: charge failed for order A-1042 | ConnectionError",
            ),
            ("yaml_config.py", "shop ERROR shop.inventory: stock sync failed: 312 items out of date"),
            ("structlog_app.py", "shop ERROR shop.refunds: refund_failed order_id=A-0977"),
            (
                "django_settings.py",
                "shop-web ERROR django.request: Internal Server Error: /checkout/ | KeyError",
            ),
            ("gunicorn_conf.py", "shop-web ERROR shop.views: checkout failed"),
            ("flask_app.py", "shop ERROR shop: Exception on /checkout (POST) | KeyError: 'customer'"),
        ],
    )
    def test_it_pages_the_fake_phone(self, name: str, paged: str) -> None:
        """`python examples/X.py` with no credentials exits 0 and shows the SMS the phone received."""
        if name == "flask_app.py" and importlib.util.find_spec("flask") is None:
            pytest.skip("Flask is not installed (it is not a dependency of smn-alert)")
        result = run([str(EXAMPLES / name)], fresh_environment())
        assert result.returncode == 0, result.stderr
        assert "paging a FakeSMNServer" in result.stdout
        assert "SMS to +86138****0001 at " in result.stdout
        assert f"  | {paged}" in result.stdout


# How each example configures logging, as a program of its own run in examples/.
EXAMPLE_CONFIGS = {
    "logging.json": "import json, logging.config\n"
    "logging.config.dictConfig(json.load(open('logging.json', encoding='utf-8')))",
    "logging.yaml": "import yaml, logging.config\n"
    "logging.config.dictConfig(yaml.safe_load(open('logging.yaml', encoding='utf-8')))",
    "django_settings.py": "import logging.config, django_settings\n"
    "logging.config.dictConfig(django_settings.LOGGING)",
    "flask_app.py": "import logging.config, flask_app\nlogging.config.dictConfig(flask_app.LOGGING)",
    "gunicorn_conf.py": "import logging.config, gunicorn_conf\n"
    "logging.config.dictConfig(gunicorn_conf.logconfig_dict)",
    "structlog_app.py": "import structlog_app\nstructlog_app.configure()",
}
# Examples whose logging configuration is one of the files above.
CONFIG_READERS = {"dictconfig_json.py": "logging.json", "yaml_config.py": "logging.yaml"}
# Deployment manifests: no logging configuration of their own (checked by TestKubernetesRedis).
MANIFESTS = {"kubernetes_redis.yaml"}


class TestConsoleKept:
    @pytest.mark.parametrize("name", sorted(EXAMPLE_CONFIGS))
    def test_every_logger_with_a_pager_also_writes_to_the_console(self, name: str) -> None:
        """Configured as the example does, each logger that pages also shows its records on the console."""
        code = f"{EXAMPLE_CONFIGS[name]}\n{CONSOLE_CHECK}\nconsole_check()\n"
        with FakeSMNServer() as server:
            result = run(["-c", code], pointing_at(server))
            assert result.returncode == 0, result.stderr
            assert server.messages == []
        assert console_gaps(result) == []

    def test_every_example_is_checked(self) -> None:
        """A new example (or configuration file) must be added to EXAMPLE_CONFIGS to be checked."""
        files = {p.name for p in EXAMPLES.iterdir() if p.suffix in {".py", ".json", ".yaml"}}
        assert files - {"_local_smn.py"} == set(EXAMPLE_CONFIGS) | set(CONFIG_READERS) | MANIFESTS
        for reader, config in CONFIG_READERS.items():
            assert config in (EXAMPLES / reader).read_text(encoding="utf-8")


class TestDjangoSettings:
    def test_logging_feeds_dictconfig_without_django(self) -> None:
        """Importing the settings module needs no Django; its LOGGING, given to dictConfig, pages errors."""
        code = textwrap.dedent(
            """
            import logging, logging.config, sys
            import django_settings
            assert "django" not in sys.modules
            logging.config.dictConfig(django_settings.LOGGING)
            logging.getLogger("django.request").error("Internal Server Error: %s", "/orders/")
            """
        )
        with FakeSMNServer() as server:
            result = run(["-c", code], pointing_at(server))
            assert result.returncode == 0, result.stderr
            [message] = server.wait_for_messages(1)
        assert message.message == "shop-web ERROR django.request: Internal Server Error: /orders/"


class TestGunicornConf:
    def test_survives_gunicorns_shallow_merge(self) -> None:
        """logconfig_dict defines every top-level key of gunicorn's defaults, so none of them dangles."""
        module = load_example("gunicorn_conf")
        assert set(module.logconfig_dict) >= GUNICORN_DEFAULT_KEYS
        assert callable(module.worker_exit)

    @staticmethod
    def pager_settings() -> dict[str, Any]:
        """What dictConfig gives SMNHandler from the example's ``pager`` entry (numbers come from outside)."""
        entry = load_example("gunicorn_conf").logconfig_dict["handlers"]["pager"]
        assert entry["class"] == "smn_alert.SMNHandler"
        settings = {key: value for key, value in entry.items() if key not in DICTCONFIG_OWN_KEYS}
        return {"endpoints": NUMBERS[:1], "sign_id": SIGN_ID, **settings}

    def test_the_budget_is_shared_not_divided(self) -> None:
        """The pager leaves shared_state to its default (one budget for the master and every worker) and
        sets no budget of its own: nothing is divided by the number of workers."""
        settings = self.pager_settings()
        assert "shared_state" not in settings
        assert not {"budget", "budget_period", "budget_12h"} & set(settings)

    @pytest.mark.parametrize(("seconds", "limit"), SMN_PER_NUMBER_LIMITS.items(), ids=["hour", "12h"])
    def test_the_fleets_one_budget_stays_within_smns_limits(self, seconds: float, limit: int) -> None:
        """The master and every worker share one budget: it alone must stay under SMN's limit per number,
        whatever the number of workers."""
        handler = SMNHandler(sender=RecordingSender(), **self.pager_settings())
        handler.close()
        most = most_sms(handler.settings, seconds)
        assert most <= limit, f"the fleet may send {most:g} SMS in {seconds:g} s"

    @pytest.mark.parametrize("seconds", SMN_PER_NUMBER_LIMITS, ids=["hour", "12h"])
    def test_the_bound_holds_for_the_example_pager_paging_flat_out(
        self, seconds: float, sender: RecordingSender
    ) -> None:
        """A pager with the example's settings, an error a minute and a flush each time, then closed,
        sends no more than most_sms() says, and not much fewer: the bound counts what the pager does."""
        clock = FakeClock()
        handler = SMNHandler(sender=sender, clock=clock, **self.pager_settings())
        log = logging.getLogger("examples.flat_out")
        log.propagate = False
        log.addHandler(handler)
        try:
            for minute in range(int(seconds // 60)):
                if minute:
                    clock.advance(60)
                log.error("checkout failed (%d)", minute)
                handler.flush(timeout=1)  # returns at once when the budget is spent
            handler.close()  # the last page at shutdown, within the same window
        finally:
            log.removeHandler(handler)
            log.propagate = True
        bound = most_sms(handler.settings, seconds)
        assert bound - 2 <= len(sender.texts) <= bound

    def test_a_forked_worker_pages_its_own_alert_and_never_the_masters(self) -> None:
        """A forked child pages its own error; the master's pending digest goes out once, by the master."""
        code = textwrap.dedent(
            """
            import logging, logging.config, os
            import gunicorn_conf
            logging.config.dictConfig(gunicorn_conf.logconfig_dict)
            [pager] = [h for h in logging.getLogger().handlers if type(h).__name__ == "SMNHandler"]
            log = logging.getLogger("shop.master")
            log.error("master first")
            assert pager.flush(5)              # paged at once: the first alert of a quiet spell
            log.error("master pending %d", 2)  # folded: waits for the 5-minute window
            pid = os.fork()
            if pid == 0:
                logging.getLogger("shop.worker").error("worker error")
                gunicorn_conf.worker_exit(None, None)
                os._exit(0)                    # as a pre-fork worker exits: no atexit
            assert os.waitpid(pid, 0)[1] == 0
            """
        )
        if not hasattr(os, "fork"):
            pytest.skip("no os.fork on this platform")
        with FakeSMNServer() as server:
            result = run(["-c", code], pointing_at(server))
            assert result.returncode == 0, result.stderr
            texts = [message.message for message in server.wait_for_messages(3)]
        assert sum("master first" in text for text in texts) == 1
        assert sum("master pending" in text for text in texts) == 1
        [worker] = [text for text in texts if "worker error" in text]
        assert "master" not in worker


class TestKubernetesRedis:
    @staticmethod
    def manifest() -> str:
        return (EXAMPLES / "kubernetes_redis.yaml").read_text(encoding="utf-8")

    def test_every_container_gets_the_shared_state_from_a_secret(self) -> None:
        """The manifest parses, and every container reads SMN_ALERT_SHARED_STATE from a Secret's key."""
        yaml = pytest.importorskip("yaml")
        documents = [doc for doc in yaml.safe_load_all(self.manifest()) if doc]
        containers = [c for doc in documents for c in doc["spec"]["template"]["spec"]["containers"]]
        assert containers
        for container in containers:
            [entry] = [e for e in container["env"] if e["name"] == ENV_SHARED_STATE]
            assert set(entry["valueFrom"]["secretKeyRef"]) == {"name", "key"}

    def test_the_variables_it_sets_are_read_by_smn_alert(self) -> None:
        """Every environment variable the manifest sets is one smn_alert reads."""
        yaml = pytest.importorskip("yaml")
        source = "".join(p.read_text(encoding="utf-8") for p in (EXAMPLES.parent / "smn_alert").glob("*.py"))
        documents = [doc for doc in yaml.safe_load_all(self.manifest()) if doc]
        names = {
            entry["name"]
            for doc in documents
            for container in doc["spec"]["template"]["spec"]["containers"]
            for entry in container["env"]
        }
        assert [name for name in sorted(names) if f'"{name}"' not in source] == []

    def test_the_secrets_url_is_accepted(self) -> None:
        """The URL the comment puts in the Secret is a valid shared_state (parsed only, nothing connects)."""
        [url] = re.findall(r"--from-literal=shared-state='([^']+)'", self.manifest())
        assert url.startswith("rediss://")
        assert open_store(url) is not None
