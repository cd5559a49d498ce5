"""`make demo`: the nightly retraining DAG through `airflow dags test`, on real replayed grid data.

A temporary AIRFLOW_HOME with its SQLite database; the embedded Electricity Maps trace for DE replayed at one
grid hour per wall second from 2023-10-20, a day that is dirty until 12:00, clean until 16:00, dirty until
22:00, then clean. Watch the sensor hold on high carbon and release on low, the training pause (checkpoint,
deferral) and resume from its checkpoint, then the emissions report read back from XCom. About a minute.

    .venv-airflow/bin/python scripts/demo_airflow.py [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "carbon_nightly_retraining"
TRACE_START = "2023-10-20T12:00Z"
SPEED = 3600.0  # one grid hour per wall second
LEAD_SECONDS = 25.0  # wall seconds of replayed dirty night before 12:00, covering Airflow's start-up

# Log lines worth showing, and how to label them.
HIGHLIGHTS = [
    (re.compile(r"DE: [\d.]+ gCO2eq/kWh \(threshold"), "sensor   "),
    (re.compile(r"DE at [\d.]+ > "), "trigger  "),
    (re.compile(r"deadline .* reached"), "deadline "),
    (re.compile(r"training paused until"), "pause    "),
    (re.compile(r"resumed from"), "resume   "),
    (re.compile(r"\[DAG TEST\] (starting|end) task"), "airflow  "),
    (re.compile(r"running trigger in line"), "deferred "),
]
EVENT = re.compile(r"\]\s+(.*?)\s+\[[\w.]+\]")


def highlight(line: str, started: float) -> str | None:
    for pattern, label in HIGHLIGHTS:
        if pattern.search(line):
            match = EVENT.search(line)
            text = match[1] if match else line.strip()
            return f"{time.monotonic() - started:6.1f}s  {label} {text[:160]}"
    return None


def demo_env(home: Path) -> dict[str, str]:
    from carbon_sensors.replay import Replay

    wall_start = pd.Timestamp.now("UTC") + pd.Timedelta(seconds=LEAD_SECONDS)
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "CARBON_AWARE_POLL_SECONDS": "0.5",
        "CARBON_AWARE_EPOCHS": "30",
        "CARBON_AWARE_RESUME_OVERHEAD": "1s",  # dags test runs deferrals in line: no scheduler latency
        "CARBON_AWARE_WAIT_HOURS": "36",
        "CARBON_AWARE_CHECKPOINT_DIR": str(home / "checkpoints"),
        **Replay(pd.Timestamp(TRACE_START), wall_start, SPEED).to_env(),
    }


def read_report(env: dict[str, str]) -> dict[str, Any]:
    """The run's XComs, read from the metadata database in a fresh interpreter (with this AIRFLOW_HOME)."""
    code = (
        "import json\n"
        "from airflow.models.xcom import XComModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        f"    rows = s.query(XComModel).filter(XComModel.dag_id == {DAG_ID!r}, XComModel.key == 'return_value')\n"
        "    print(json.dumps({r.task_id: XComModel.deserialize_value(r) for r in rows}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary AIRFLOW_HOME (logs, database)"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="carbon-demo-airflow-"))
    started = time.monotonic()
    try:
        env = demo_env(home)
        print(f"AIRFLOW_HOME={home}  (SQLite; replay of DE {TRACE_START[:10]} at {SPEED:g}x)")
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
        env = demo_env(home)  # replay counted from now, after the database is ready
        print(
            f"{time.monotonic() - started:6.1f}s  airflow   database migrated; `airflow dags test {DAG_ID}`"
        )
        log_path = home / "dags_test.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [str(BIN / "airflow"), "dags", "test", DAG_ID],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert proc.stdout is not None
            in_report = False
            for line in proc.stdout:
                log.write(line)
                if line.startswith("CARBON REPORT"):
                    in_report = True
                    continue
                if in_report and line.startswith("  "):
                    continue  # the report is printed from XCom below
                in_report = False
                shown = highlight(line, started)
                if shown:
                    print(shown, flush=True)
            code = proc.wait()
        if code != 0:
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
            print(
                f"{tail}\n`airflow dags test` failed ({code}); rerun with --keep for the full log",
                file=sys.stderr,
            )
            return code
        values = read_report(env)
        print("\nXCom `retrain` return value (the emissions report):")
        print(json.dumps(values["retrain"]["report"], indent=2))
        print("\nXCom `report` return value:", json.dumps(values["report"]))
        kept = f"; full log: {log_path}" if args.keep else ""
        print(f"\ndone in {time.monotonic() - started:.0f}s{kept}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
