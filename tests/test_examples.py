"""Tests that every file in examples/ runs on a fresh machine and pages a FakeSMNServer."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smn_alert.testing import FakeSMNServer

from .conftest import fresh_environment, smn_environment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The top-level keys of gunicorn.glogging.CONFIG_DEFAULTS, which gunicorn shallow-updates with logconfig_dict.
GUNICORN_DEFAULT_KEYS = {"version", "disable_existing_loggers", "root", "loggers", "handlers", "formatters"}

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
        spec = importlib.util.spec_from_file_location("gunicorn_conf", EXAMPLES / "gunicorn_conf.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert set(module.logconfig_dict) >= GUNICORN_DEFAULT_KEYS
        assert callable(module.worker_exit)

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
