"""Run every smn_alert benchmark and print one table, with the machine it ran on.

    python benchmarks/run.py            # the full run (a few minutes)
    python benchmarks/run.py --quick    # smaller, a minute or two
    python benchmarks/run.py --smoke    # every benchmark with minimal sizes, a few seconds (for tests)
    python benchmarks/run.py --json results.json --only emit,flood

Missing a target is reported in the result column (PASS / MISS), not by the exit code; the exit code is
1 only when a benchmark crashed (its row says ERROR and the others still ran).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, error_row, machine

#: The benchmark modules, in the order of the issue.
BENCHMARKS = (
    "bench_emit",
    "bench_beside",
    "bench_exception",
    "bench_structlog",
    "bench_flood",
    "bench_first_page",
    "bench_shutdown",
    "bench_import",
    "bench_fleet",
)
COLUMNS = ("benchmark", "measure", "smn_alert", "reference", "ratio", "target", "result")


def run_one(name: str, mode: str) -> tuple[list[Row], float]:
    """Run one benchmark module; a crash becomes an ERROR row (traceback on stderr)."""
    start = time.perf_counter()
    module: Any = None
    try:
        module = importlib.import_module(name)
        print(f"running {module.TITLE} ...", file=sys.stderr, flush=True)
        rows: list[Row] = module.run(mode)
    except Exception as error:
        traceback.print_exc()
        rows = [error_row(name.removeprefix("bench_"), error)]
    elapsed = time.perf_counter() - start
    print(f"  done in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return rows, elapsed


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (pasteable into the README)."""
    cells = [COLUMNS] + [
        (r.bench, r.measure, r.value, r.reference, r.ratio, r.target, r.result) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def header(info: dict[str, Any], mode: str) -> str:
    cores = f"{info['cores']} cores ({info['usable_cores']} usable)"
    return f"Machine: {info['cpu']}, {cores}, {info['python']}, {info['os']}; mode: {mode}"


def report(rows: Sequence[Row], info: dict[str, Any], mode: str, durations: dict[str, float]) -> str:
    notes = [f"- {r.bench}: {r.note}" for r in rows if r.note]
    counts = {k: sum(r.result == k for r in rows) for k in ("PASS", "MISS", "ERROR")}
    timing = ", ".join(f"{name.removeprefix('bench_')} {s:.1f} s" for name, s in durations.items())
    summary = f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['ERROR']} ERROR; took {timing}"
    return "\n".join([header(info, mode), "", table(rows), "", *notes, "", summary])


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller run, a minute or two")
    parser.add_argument("--smoke", action="store_true", help="minimal sizes, a few seconds (for tests)")
    parser.add_argument("--json", metavar="PATH", help="also save machine, rows and raw numbers as JSON")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated benchmarks, e.g. emit,flood")
    return parser.parse_args(argv)


def selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    wanted = {f"bench_{name.strip().removeprefix('bench_')}" for name in only.split(",") if name.strip()}
    unknown = wanted - set(BENCHMARKS)
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(BENCHMARKS)}"
        )
    return [name for name in BENCHMARKS if name in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    info = machine()
    print(header(info, mode), file=sys.stderr, flush=True)
    rows: list[Row] = []
    durations: dict[str, float] = {}
    for name in selected(args.only):
        found, durations[name] = run_one(name, mode)
        rows.extend(found)
    print(report(rows, info, mode, durations))
    if args.json:
        saved = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mode": mode,
            "machine": info,
            "durations": durations,
            "rows": [row.as_dict() for row in rows],
        }
        Path(args.json).write_text(json.dumps(saved, indent=2) + "\n")
    return 1 if any(row.result == "ERROR" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
