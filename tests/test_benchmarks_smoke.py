"""The benchmarks run end to end at tiny sizes, and the flood benchmark reads SMS counts right.

Timing targets are not asserted here: the benchmarks report them as PASS / MISS themselves.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smn_alert._alert import Alert
from smn_alert._compose import GroupSummary, PageContext, compose

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ROWS = (
    "emit.error",
    "emit.error.overhead",
    "emit.beside_stream",
    "emit.beside_stream.median",
    "emit.exception",
    "structlog.error",
    "structlog.info",
    "flood.wall",
    "flood.memory",
    "flood.sms",
    "flood.counts",
    "flood.dropped",
    "first_page.cold",
    "first_page.fresh",
    "first_page.warm",
    "shutdown.hung",
    "shutdown.healthy",
    "import.smn_alert",
    "import.SMNHandler",
    "import.requests",
)


Smoke = tuple[subprocess.CompletedProcess[str], dict[str, Any]]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    saved = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--smoke", "--json", str(saved)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    results = json.loads(saved.read_text()) if saved.exists() else {}
    return done, results


@pytest.mark.subprocess
class TestSmokeRun:
    def test_exits_zero(self, smoke: Smoke) -> None:
        """`run.py --smoke` finishes with exit code 0: no benchmark crashed."""
        done, _ = smoke
        assert done.returncode == 0, done.stderr[-2000:]

    def test_prints_every_row(self, smoke: Smoke) -> None:
        """The table has a row for every benchmark, none of them an ERROR."""
        done, _ = smoke
        printed = {line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")}
        assert set(ROWS) <= printed, done.stdout
        assert "| ERROR" not in done.stdout

    def test_prints_the_machine(self, smoke: Smoke) -> None:
        """The output says what it ran on: CPU, cores and Python version."""
        done, _ = smoke
        assert done.stdout.startswith("Machine: ")
        assert "cores" in done.stdout and sys.version.split()[0] in done.stdout

    def test_json_has_verdicts(self, smoke: Smoke) -> None:
        """`--json` saves the machine and every row with a PASS, MISS or INFO verdict."""
        _, results = smoke
        assert results["mode"] == "smoke" and results["machine"]["cpu"]
        rows = {row["bench"]: row["result"] for row in results["rows"]}
        assert set(ROWS) <= set(rows)
        assert set(rows.values()) <= {"PASS", "MISS", "INFO"}

    def test_issue_10_rows_have_targets(self, smoke: Smoke) -> None:
        """The rows of issue 10 are judged against a target (PASS or MISS), not merely reported."""
        _, results = smoke
        rows = {row["bench"]: row for row in results["rows"]}
        judged = ("emit.error.overhead", "emit.beside_stream", "structlog.error", "structlog.info",
                  "flood.dropped", "import.SMNHandler")  # fmt: skip
        for name in judged:
            assert rows[name]["target"] and rows[name]["result"] in {"PASS", "MISS"}, rows[name]


# --- the flood benchmark's reading of SMS texts, against the texts smn_alert really writes --------------
@pytest.fixture()
def flood(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_flood

    return bench_flood


@pytest.fixture()
def counted_in(flood: Any) -> Any:
    return flood.counted_in


def _groups(counts: list[int], words: int = 3) -> list[GroupSummary]:
    groups = []
    for kind, count in enumerate(counts):
        message = f"kind {kind} " + "timeout while talking to the payment service " * words
        alert = Alert(logging.ERROR, "ERROR", f"app.{kind}", f"kind {kind}", message, created=1000.0)
        groups.append(GroupSummary(alert, count, 1000.0, 1000.0 + count))
    return groups


class TestCountedIn:
    @pytest.mark.parametrize(
        "counts",
        [[1], [1, 1], [5], [1234, 7, 1], [3] * 40, list(range(1, 200, 3))],
        ids=["single", "two-singles", "one-kind", "three-kinds", "40-kinds", "66-kinds"],
    )
    def test_reads_kinds_and_more(self, counted_in: Any, counts: list[int]) -> None:
        """Kind lines, `+N more alerts of K kinds` and the single-alert form add up to every alert."""
        text = compose(_groups(counts), PageContext())
        assert counted_in(text) == sum(counts)

    def test_footers_restate_alerts_counted_in_the_kinds(self, counted_in: Any) -> None:
        """`held back`, `only counted` (buffer full) and `undelivered` restate alerts counted elsewhere."""
        counts = [900, 40, 2]
        context = PageContext(held_back=sum(counts), held_since=1000.0, dropped=800, failed_before=77)
        assert counted_in(compose(_groups(counts), context)) == sum(counts)

    def test_reads_a_page_too_short_for_kinds(self, counted_in: Any) -> None:
        """The bare `N alerts` of a very short page still counts every alert."""
        text = compose(_groups([1200, 34], words=20), PageContext(max_length=20))
        assert counted_in(text) == 1234

    @pytest.mark.parametrize("max_length", [490, 120], ids=["long-footer", "short-footer"])
    def test_reads_how_many_were_only_counted(self, flood: Any, max_length: int) -> None:
        """`N of these only counted (buffer full)` and its short form `N only counted` give N."""
        context = PageContext(held_back=942, held_since=1000.0, dropped=800, max_length=max_length)
        text = compose(_groups([900, 40, 2]), context)
        assert "only counted" in text
        assert flood.only_counted_in(text) == 800
        assert flood.only_counted_in(compose(_groups([900, 40, 2]), PageContext())) == 0

    def test_refuses_an_unknown_line(self, counted_in: Any) -> None:
        """A line of a shape it does not know is an error, not a silent zero."""
        with pytest.raises(ValueError, match="no known shape"):
            counted_in("ERROR x3: app: boom\nsomething new 12")
