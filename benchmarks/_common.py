"""Shared pieces of the benchmarks: result rows, statistics, the machine, subprocesses, RSS and handlers."""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

#: The modes ``run.py`` knows, smallest first.
MODES = ("smoke", "quick", "full")
#: On-call numbers and signature id every benchmark pages (the fake server accepts anything well-formed).
ENDPOINTS = ["+8613800000000"]
SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
#: SMN's longest message, in characters.
MAX_SMS = 490
HERE = Path(__file__).resolve().parent


# --- rows ----------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the result table; ``data`` holds the raw numbers for ``--json``."""

    bench: str
    measure: str
    value: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    result: str = "INFO"  # PASS, MISS, INFO or ERROR
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def error_row(bench: str, error: BaseException) -> Row:
    what = f"{type(error).__name__}: {error}".replace("\n", " ")
    return Row(bench, "crashed", "-", result="ERROR", note=what[:300])


# --- statistics and units -------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``pct`` % of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles (nearest rank): the spread around a median."""
    return percentile(values, 25), percentile(values, 75)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"


def plus_us(seconds: float) -> str:
    """A cost added, with its sign: ``+3.80 us`` (or ``-0.10 us`` when within noise of nothing)."""
    return f"{seconds * 1e6:+.2f} us"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"


def times(ratio: float) -> str:
    return f"{ratio:.2f}x"


# --- the machine ---------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
    }


# --- memory --------------------------------------------------------------------------------------------
def proc_status_kib(key: str) -> Optional[int]:
    """``VmRSS``, ``VmHWM`` ... of this process in KiB from /proc/self/status; None where there is none."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


class RssSampler:
    """Samples VmRSS on a thread; ``peak()`` also trusts VmHWM when it rose while sampling."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._hwm_before = proc_status_kib("VmHWM") or 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            rss = proc_status_kib("VmRSS")
            if rss is not None:
                self.samples.append(rss)
            if self._stop.wait(self.interval):
                return

    def peak(self) -> int:
        hwm = proc_status_kib("VmHWM") or 0
        sampled = max(self.samples, default=0)
        return max(sampled, hwm) if hwm > self._hwm_before else sampled


# --- subprocesses --------------------------------------------------------------------------------------
_pycache: list[str] = []
#: Everything the child interpreters import, compiled into the private bytecode cache before any is timed.
WARM_UP = (
    "import json, logging.handlers, queue, requests, smn_alert._handler, smn_alert.testing, "
    "smn_alert._client, smn_alert._processor"
)


def child_env() -> dict[str, str]:
    """The environment for child interpreters: bytecode cached, as for an installed package.

    ``PYTHONDONTWRITEBYTECODE`` would make every child compile smn_alert from source while the standard
    library loads from its cached bytecode; a private cache directory keeps the repository clean.
    """
    if _pycache:
        return {**_without_no_bytecode(), "PYTHONPYCACHEPREFIX": _pycache[0]}
    _pycache.append(tempfile.mkdtemp(prefix="smn_alert_bench_pycache_"))
    atexit.register(shutil.rmtree, _pycache[0], ignore_errors=True)
    env = child_env()
    # Fill the cache once, so that no measured child compiles (which costs time and memory).
    subprocess.run([sys.executable, "-c", WARM_UP], env=env, capture_output=True, timeout=120, check=True)
    return env


def _without_no_bytecode() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_python(args: Sequence[str], timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run this Python with ``args``; return the finished process and its wall time in seconds."""
    env = child_env()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    return done, time.perf_counter() - start


def run_json(args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run this Python with ``args`` and parse the JSON object on the last line of its output."""
    done, _ = run_python(args, timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"child {args[:2]} exited {done.returncode}: {' / '.join(tail)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- loggers and handlers ------------------------------------------------------------------------------
@contextmanager
def attached(name: str, *handlers: logging.Handler, level: int = logging.ERROR) -> Iterator[logging.Logger]:
    """A logger that sends only to ``handlers`` (in that order) while the block runs."""
    logger = logging.getLogger(name)
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.handlers[:] = list(handlers)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


def smn_settings(server: Any, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for an ``SMNHandler`` paging ``ENDPOINTS`` through ``server``.

    One process's rows share nothing (``shared_state="process"``): each trial's fresh handler would otherwise
    fold into the incident the last one paged. The fleet's rows pass their own ``shared_state``.
    """
    settings = {"endpoints": ENDPOINTS, "sign_id": SIGN_ID, "shared_state": "process", **server.settings()}
    return {**settings, **overrides}
