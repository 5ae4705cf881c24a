"""gunicorn ``-w 4`` configured as the README says (``logconfig_dict`` with an SMNHandler): one incident in
four workers pages once, and the digests count every error logged, through a real FakeSMNServer."""

from __future__ import annotations

import importlib.util
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from smn_alert._store import ENV_SHARED_STATE
from smn_alert.testing import FakeSMNServer

from .conftest import smn_environment

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(
        importlib.util.find_spec("gunicorn") is None,
        reason="gunicorn is not installed (it is in the test extra: pip install -e '.[test]')",
    ),
]

REQUESTS = 200
RUN_TIMEOUT = 30.0
DIGEST = re.compile(r"^[A-Z]+ x([\d,]+)\b", re.MULTILINE)

APP = """
import logging, os

def application(environ, start_response):
    logging.getLogger("shop.views").error("checkout failed: %s", "payment service unreachable")
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""

CONF = """
import logging

bind = "127.0.0.1:{port}"
workers = 4
logconfig_dict = {{
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {{"generic": {{"format": "[%(process)d] [%(levelname)s] %(name)s: %(message)s"}}}},
    "handlers": {{
        "console": {{"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"}},
        "error_console": {{"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"}},
        "pager": {{"class": "smn_alert.SMNHandler", "level": "ERROR", "window": 2, "shutdown_timeout": 3}},
    }},
    "loggers": {{
        "gunicorn.error": {{"level": "INFO", "handlers": ["error_console", "pager"], "propagate": False}},
        "gunicorn.access": {{"level": "INFO", "handlers": ["console"], "propagate": False}},
    }},
    "root": {{"level": "INFO", "handlers": ["console", "pager"]}},
}}


def worker_exit(server, worker):
    for handler in logging.getLogger().handlers:
        handler.flush()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())
    except urllib.error.HTTPError as error:  # the app answers 500 after logging its error
        return str(error.read().decode())


def count_of(text: str) -> int:
    found = [int(m[1].replace(",", "")) for m in DIGEST.finditer(text)]
    return sum(found) if found else 1


def test_four_workers_page_one_incident_once(smn_server: FakeSMNServer, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "shop.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gunicorn_conf.py").write_text(CONF.format(port=port))
    env = {**smn_environment(smn_server), ENV_SHARED_STATE: f"sqlite:///{tmp_path}/shared.db"}
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "shop:application"]
    with (tmp_path / "gunicorn.log").open("w") as log:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "gunicorn.log"
                ).read_text()
                time.sleep(0.05)
        pids = {get(f"http://127.0.0.1:{port}/checkout") for _ in range(REQUESTS)}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(RUN_TIMEOUT)
    said = (tmp_path / "gunicorn.log").read_text()
    texts = [message.message for message in smn_server.messages]
    first, *digests = texts
    assert first.startswith("ERROR shop.views: checkout failed"), texts
    # Unshared: 4 first pages and 4 digests. Shared: the worker_exit flushes only push counts; the last
    # process to leave (the master, or the last worker) sends the one digest.
    assert " from " not in first and len(digests) == 1 and DIGEST.match(digests[0]), texts
    assert sum(map(count_of, texts)) == REQUESTS, (texts, said)
    assert len(pids) > 1, "the requests were served by several workers"
