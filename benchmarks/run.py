"""Every benchmark with its defaults, then one summary of the performance targets: `make bench`.

Runs `benchmarks.ledger`, `benchmarks.load`, `benchmarks.engine`, `benchmarks.engine_quality`,
`benchmarks.hostile`, `benchmarks.flood` and `benchmarks.chaos`, each in a process of its own
(each writes its full JSON to `benchmarks/results/`), then prints the targets with their figures
as JSON and writes them to `benchmarks/results/summary.json`. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS = ("ledger", "load", "engine", "engine_quality", "hostile", "flood", "chaos")


def run(name: str) -> tuple[dict[str, Any], float]:
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    os.sync()  # what the previous benchmark wrote goes to disk now, not during this one
    started = time.monotonic()
    out = RESULTS / f"{name}.json"
    subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(out.read_text()), time.monotonic() - started


def ledger_targets(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """At least 2,000 reservations per second with 100 concurrent callers, p99 under 50 ms.

    The target is the embedded default's (SQLite, one process); other stores and several
    processes, when the ledger benchmark measures them, are reported apart.
    """
    targets: dict[str, Any] = {}
    others: dict[str, Any] = {}
    for result in report["results"]:
        if result.get("concurrency") != 100:
            continue
        store, processes = result.get("store", "sqlite"), result.get("processes", 1)
        figures = {
            "per_second": result["per_second"],
            "p99_ms": result["p99_ms"],
            "met": result["per_second"] >= 2000 and result["p99_ms"] < 50,
        }
        if store == "sqlite" and processes == 1:
            targets[f"ledger_{result['name']}"] = figures
        else:
            others[f"{store}_{processes}proc_{result['name']}"] = figures
    return targets, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    targets: dict[str, Any] = {}
    ledger_others: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in args.only.split(","):
        report, took = run(name)
        seconds[name] = round(took, 1)
        if name == "ledger":
            found, ledger_others = ledger_targets(report)
            targets.update(found)
        else:
            targets.update(report["targets"])
    summary = {
        "benchmark": "summary",
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": {**seconds, "total": round(time.monotonic() - started, 1)},
        "all_met": all(target["met"] for target in targets.values()),
        "targets": targets,
        "ledger_other_stores": ledger_others,
        "details": {name: str((RESULTS / f"{name}.json").relative_to(ROOT)) for name in seconds},
    }
    text = json.dumps(summary, indent=2)
    (RESULTS / "summary.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
