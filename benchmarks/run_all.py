"""Run every benchmark and save each one's JSON in benchmarks/results/<name>.json (`make bench`).

Each benchmark prints one JSON document on stdout; this runner only collects them, it measures nothing itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from carbon_sensors.atomic import atomic_write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# result name -> script and arguments
RUNS = {
    "backtest-2023": ["backtest.py"],
    "backtest-2023-forecast-mape-0.10": ["backtest.py", "--forecast-mape", "0.10"],
    "backtest-neso-issues-2023-03": [
        "backtest.py",
        "--forecast-issues",
        "../shared/data/neso-fw48h-2023-sample/neso_fw48h_issues_2023-03.csv",
        "--trace",
        "../shared/data/neso-carbon-intensity-gb/neso_2023_national_intensity.csv",
    ],
    "backtest-heldout-2020": ["backtest.py", "--held-out"],
    "overhead": ["overhead.py"],
    "triggers": ["triggers.py"],
    "provider_cache": ["provider_cache.py"],
    "imports": ["imports.py"],
}


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for name, (script, *args) in RUNS.items():
        print(f"== {name}: {script} {' '.join(args)}", flush=True)
        command = [sys.executable, str(HERE / script), *args]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            failed.append(name)
            continue
        doc = json.loads(proc.stdout)
        atomic_write_text(RESULTS / f"{name}.json", json.dumps(doc, indent=2) + "\n")
        print(json.dumps(doc, indent=2)[:2000])
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
