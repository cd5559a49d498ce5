"""Core log records reach the Airflow task log: the Task SDK routes the root logger (INFO and up) to the log it
sends to the supervisor, so `carbon_sensors` records need no handler of ours (unlike Prefect's run logs).

Run in a fresh process: the Task SDK's logging set-up is process-wide and would change every later test's logs.
"""

from __future__ import annotations

import json
import subprocess
import sys

TASK_PROCESS = """
import io, logging, sys
from datetime import timedelta
import pandas as pd
from airflow.sdk.log import configure_logging
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import ThresholdStrategy

out = io.StringIO()
configure_logging(json_output=True, output=out, sending_to_supervisor=True)  # as the task runner does
strategy = ThresholdStrategy(TraceProvider(), "DE", pause_above=250, resume_below=200, max_pause=timedelta(hours=1))
strategy.decide(pd.Timestamp("2030-01-01T00:00Z"), remaining_work=timedelta(hours=1), deadline=None)  # no data
logging.getLogger("carbon_sensors.training.runner").info("resumed from the checkpoint at step 7")
sys.stdout.write(out.getvalue())
"""


def test_a_strategy_fallback_and_a_runner_info_land_in_the_task_log() -> None:
    done = subprocess.run([sys.executable, "-c", TASK_PROCESS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    by_logger = {(r["logger"], r["level"]): r["event"] for r in lines}
    assert "falling back to run" in by_logger[("carbon_sensors.strategies", "warning")]
    assert by_logger[("carbon_sensors.training.runner", "info")] == "resumed from the checkpoint at step 7"
