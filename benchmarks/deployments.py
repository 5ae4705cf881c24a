"""The README's deployments, run for real: how many SMS one incident sends to each phone, shared or not.

    python benchmarks/deployments.py [--rows gunicorn,recycled,celery,pods,sigkill,crashloop] [--json F]

Each row runs the real thing against a FakeSMNServer on 127.0.0.1 twice, interleaved: with
``SMN_ALERT_SHARED_STATE=process`` (what every process did before shared state) and with shared state (the
default SQLite file, in a private temporary ``TMPDIR``; Redis for the rows that span "hosts"). It counts the
SMS the fake server accepted per phone and checks the counts they carry against the alerts logged. It takes a
few minutes (the incidents last 20 s); it is not part of ``run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from smn_alert.testing import FakeSMNServer  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

NUMBER = "+8613800000000"
SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
# A WSGI app whose every request logs ``n`` errors, and a gunicorn config as the README's (a console handler
# and the pager from the environment; worker_exit flushes).
APP = """
import logging
log = logging.getLogger("shop.payments")
def app(environ, start_response):
    n = int(environ.get("QUERY_STRING", "n=1").partition("=")[2] or 1)
    for _ in range(n):
        log.error("charge failed: gateway timed out")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""
CONF = """
import logging
logconfig_dict = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"generic": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.FileHandler", "filename": "console.log", "formatter": "generic"},
        "pager": {"class": "smn_alert.SMNHandler", "level": "ERROR",
                  "window": float(__import__("os").environ.get("WINDOW", "300"))},
    },
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["console", "pager"], "propagate": False},
                "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False}},
    "root": {"level": "INFO", "handlers": ["console", "pager"]},
}
def worker_exit(server, worker):
    for handler in logging.getLogger().handlers:
        handler.flush()
"""
# Celery prefork, as the README's recipe: the pager from the environment on the root logger of each process.
TASKS = """
import logging, logging.config, os
from celery import Celery
from celery.signals import setup_logging, worker_process_shutdown
app = Celery("shop", broker=os.environ["BROKER"])
LOGGING = {
    "version": 1, "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.FileHandler", "filename": "console.log"},
                 "pager": {"class": "smn_alert.SMNHandler", "level": "ERROR"}},
    "root": {"level": "INFO", "handlers": ["console", "pager"]},
}
@setup_logging.connect
def configure_logging(**kwargs):
    logging.config.dictConfig(LOGGING)
@worker_process_shutdown.connect
def send_pending_pages(**kwargs):
    for handler in logging.getLogger().handlers:
        handler.close()
@app.task
def charge(n):
    for _ in range(n):
        logging.getLogger("shop.tasks").error("charge failed: gateway timed out")
"""
CRASH = """
import logging, sys
from smn_alert import SMNHandler
logging.getLogger().addHandler(SMNHandler())
logging.getLogger("shop.worker").critical("worker crashed: KeyError 'customer'")
sys.exit(1)
"""
_COUNT = re.compile(r"\bx([\d,]+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(server: FakeSMNServer, folder: Path, shared: Optional[str]) -> dict[str, str]:
    """The child's environment: the pager's settings for ``server``, and ``shared`` (None: the default)."""
    settings = server.settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMN_ALERT_", "HUAWEICLOUD_SDK_"))}
    env.update(
        SMN_ALERT_ENDPOINTS=NUMBER,
        SMN_ALERT_SIGN_ID=SIGN_ID,
        SMN_ALERT_ENDPOINT_URL=settings["endpoint_url"],
        HUAWEICLOUD_SDK_PROJECT_ID=settings["project_id"],
        HUAWEICLOUD_SDK_AK=settings["ak"],
        HUAWEICLOUD_SDK_SK=settings["sk"],
        TMPDIR=str(folder),  # the default shared file lives here: nothing is left behind
        PYTHONPATH=str(ROOT),
    )
    if shared is not None:
        env["SMN_ALERT_SHARED_STATE"] = shared
    return env


def alerts_in(texts: list[str]) -> int:
    """Alerts the pages account for: a line's ``xN``, or 1 for a first page's line without a count."""
    total = 0
    for text in texts:
        counts = [int(c.replace(",", "")) for c in _COUNT.findall(text)]
        total += sum(counts) if counts else 1
    return total


def texts_of(server: FakeSMNServer) -> list[str]:
    return [message.message for message in server.messages]


@contextmanager
def gunicorn(folder: Path, env: dict[str, str], *extra: str) -> Iterator[int]:
    """Run gunicorn with 4 workers on a free port; stop it with SIGTERM (a graceful stop) at the end."""
    (folder / "app.py").write_text(APP)
    (folder / "conf.py").write_text(CONF)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "conf.py",
        "-w",
        "4",
        "-b",
        f"127.0.0.1:{port}",
        *extra,
    ]
    process = subprocess.Popen([*command, "app:app"], cwd=folder, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(port), 20.0)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?n=0", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the deployment did not come up")
        time.sleep(0.1)


def incident(port: int, requests: int = 200, per_request: int = 10, seconds: float = 20.0) -> int:
    """Send ``requests`` requests over ``seconds``, each logging ``per_request`` errors; return how many."""
    start = time.monotonic()
    for i in range(requests):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?n={per_request}", timeout=10) as answer:
            answer.read()
        time.sleep(max(0.0, start + seconds * (i + 1) / requests - time.monotonic()))
    return requests * per_request


# --- the rows ------------------------------------------------------------------------------------------
def row_gunicorn(shared: Optional[str], *extra: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, FakeSMNServer() as server:
        folder = Path(tmp)
        with gunicorn(folder, environment(server, folder, shared), *extra) as port:
            logged = incident(port)
        time.sleep(0.5)
        texts = texts_of(server)
    return {"sms": len(texts), "logged": logged, "counted": alerts_in(texts), "texts": texts}


def row_recycled(shared: Optional[str]) -> dict[str, Any]:
    return row_gunicorn(shared, "--max-requests", "50", "--max-requests-jitter", "0")


def row_celery(shared: Optional[str]) -> dict[str, Any]:
    """Celery prefork, 4 children recycled every 50 tasks, a Redis broker (needs ``pip install celery``)."""
    with tempfile.TemporaryDirectory() as tmp, FakeSMNServer() as server:
        folder = Path(tmp)
        (folder / "broker").mkdir()
        redis = RedisServer(folder / "broker").start()
        try:
            env = {
                **environment(server, folder, shared),
                "BROKER": redis.url,
                "PYTHONPATH": f"{folder}:{ROOT}",
            }
            (folder / "tasks.py").write_text(TASKS)
            command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-c", "4", "-P", "prefork",
                       "--max-tasks-per-child", "50", "--loglevel", "WARNING"]  # fmt: skip
            worker = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
            logged = _send_tasks(folder, env, tasks=200, per_task=10, seconds=20.0)
            time.sleep(3.0)
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        finally:
            redis.stop()
        time.sleep(0.5)
        texts = texts_of(server)
    return {"sms": len(texts), "logged": logged, "counted": alerts_in(texts), "texts": texts}


def _send_tasks(folder: Path, env: dict[str, str], tasks: int, per_task: int, seconds: float) -> int:
    script = textwrap.dedent(f"""
        import time
        from tasks import charge
        start = time.monotonic()
        for i in range({tasks}):
            charge.delay({per_task})
            time.sleep(max(0.0, start + {seconds} * (i + 1) / {tasks} - time.monotonic()))
    """)
    subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, check=True, timeout=120)
    return tasks * per_task


def row_pods(shared: Optional[str], seconds: float = 60.0) -> dict[str, Any]:
    """Three gunicorn masters of 4 workers each (three "pods"), one incident; Redis is the shared state."""
    with tempfile.TemporaryDirectory() as tmp, FakeSMNServer() as server:
        folder = Path(tmp)
        (folder / "redis").mkdir()
        redis = RedisServer(folder / "redis").start()
        try:
            state = None if shared == "process" else redis.url
            pods = [folder / f"pod{i}" for i in range(3)]
            with _all(pods, [environment(server, pod, state or "process") for pod in _made(pods)]) as ports:
                logged = _incident_on(ports, seconds)
        finally:
            redis.stop()
        time.sleep(0.5)
        texts = texts_of(server)
    return {"sms": len(texts), "logged": logged, "counted": alerts_in(texts), "texts": texts}


def _made(folders: list[Path]) -> list[Path]:
    for folder in folders:
        folder.mkdir()
    return folders


@contextmanager
def _all(folders: list[Path], envs: list[dict[str, str]]) -> Iterator[list[int]]:
    with (
        gunicorn(folders[0], envs[0]) as a,
        gunicorn(folders[1], envs[1]) as b,
        gunicorn(folders[2], envs[2]) as c,
    ):
        yield [a, b, c]


def _incident_on(ports: list[int], seconds: float) -> int:
    start, requests = time.monotonic(), 300
    for i in range(requests):
        port = ports[i % len(ports)]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?n=10", timeout=10) as answer:
            answer.read()
        time.sleep(max(0.0, start + seconds * (i + 1) / requests - time.monotonic()))
    return requests * 10


def row_sigkill(shared: Optional[str]) -> dict[str, Any]:
    """4 workers, a 10 s window; one worker's errors are folded, then it is killed with SIGKILL; the others
    live on past the window's end (gunicorn starts a new worker), then gunicorn stops."""
    with tempfile.TemporaryDirectory() as tmp, FakeSMNServer() as server:
        folder = Path(tmp)
        with gunicorn(folder, {**environment(server, folder, shared), "WINDOW": "10"}) as port:
            logged = incident(port, requests=100, per_request=5, seconds=5.0)
            time.sleep(2.0)  # a second and more: every worker's counts have reached the store
            pids = _worker_pids(folder)
            os.kill(pids[0], signal.SIGKILL)
            time.sleep(12.0)
        time.sleep(0.5)
        texts = texts_of(server)
    return {"sms": len(texts), "logged": logged, "counted": alerts_in(texts), "texts": texts}


def _worker_pids(folder: Path) -> list[int]:
    """The workers' pids, read from the console log's ``[pid]`` (the master's is the first seen)."""
    seen = re.findall(r"\[(\d+)\]", (folder / "console.log").read_text())
    ordered = list(dict.fromkeys(int(pid) for pid in seen))
    return ordered[1:] or ordered


def row_crashloop(shared: Optional[str], restarts: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, FakeSMNServer() as server:
        folder = Path(tmp)
        env = environment(server, folder, shared)
        for _ in range(restarts):
            subprocess.run(
                [sys.executable, "-c", CRASH], env=env, timeout=60, stderr=subprocess.DEVNULL, check=False
            )
        texts = texts_of(server)
    return {"sms": len(texts), "logged": restarts, "counted": alerts_in(texts), "texts": texts}


ROWS: dict[str, tuple[str, Callable[[Optional[str]], dict[str, Any]]]] = {
    "gunicorn": ("gunicorn -w 4, 2,000 errors in 20 s", row_gunicorn),
    "recycled": ("gunicorn -w 4 --max-requests 50, 2,000 errors in 20 s", row_recycled),
    "celery": ("Celery prefork -c 4 --max-tasks-per-child 50, 2,000 errors in 20 s", row_celery),
    "pods": ("3 pods x 4 workers (3 gunicorn masters, Redis), one 60 s incident", row_pods),
    "sigkill": ("4 workers, one SIGKILLed with its counts folded", row_sigkill),
    "crashloop": ("a service crash-looping, 20 restarts", row_crashloop),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    for name in args.rows.split(","):
        title, run = ROWS[name]
        before, after = run("process"), run(None)
        results[name] = {"title": title, "process": before, "shared": after}
        print(f"{title}\n  process: {_said(before)}\n  shared:  {_said(after)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _said(result: dict[str, Any]) -> str:
    logged, counted = result["logged"], result["counted"]
    return f"{result['sms']} SMS per phone; alerts logged {logged:,}, counted on the SMS {counted:,}"


if __name__ == "__main__":
    main()
