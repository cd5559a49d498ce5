# Airflow's @task typing turns a call's result into XComArg, which mypy cannot match to the next task's
# parameter types; the values are resolved at run time.
# mypy: disable-error-code="arg-type"
"""Batch ETL whose heavy stage waits for the lowest-carbon forecast window before its deadline.

extract -> transform -> [carbon window hold] -> heavy model fit -> load. The hold plans once, waits in the
triggerer until the window (no polling, no worker), and pushes its plan to XCom; one line puts it there:
`behind_carbon_window(heavy, zone=[...], duration="2h")`. The heavy stage reads which zone was chosen.

The data processed is the embedded real 2023 Electricity Maps trace (a stand-in for your warehouse).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from airflow.sdk import DAG, get_current_context, task

from carbon_operators.window import behind_carbon_window
from carbon_sensors import embedded

ZONES = [z.strip() for z in os.environ.get("CARBON_AWARE_ETL_ZONES", "DE,GB").split(",")]
CONN_ID = os.environ.get("CARBON_AWARE_CONN_ID") or None
OUTPUT = Path(os.environ.get("CARBON_AWARE_ETL_OUTPUT", Path(tempfile.gettempdir()) / "carbon-etl"))
# Wall time from the window's start to the heavy task running (triggerer, scheduler, worker pick-up), kept
# free before the deadline; `airflow dags test` runs deferrals in line, so a replay test sets it to a second.
RESUME_OVERHEAD = os.environ.get("CARBON_AWARE_RESUME_OVERHEAD", "2min")


@task
def extract() -> str:
    """Land the raw hourly data of every zone (here: the embedded 2023 trace) as one CSV."""
    frames = [embedded.load(zone).values.rename(zone) for zone in ZONES]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "raw.csv"
    pd.concat(frames, axis=1).to_csv(path)
    return str(path)


@task
def transform(raw_path: str) -> str:
    """Calendar features and a next-day target per zone."""
    raw = pd.read_csv(raw_path, index_col=0, parse_dates=True)
    rows = []
    for zone in raw.columns:
        series = raw[zone].dropna()
        when = pd.DatetimeIndex(series.index)
        frame = pd.DataFrame(
            {
                "zone": zone,
                "hour": when.hour,
                "weekday": when.day_of_week,
                "month": when.month,
                "lag_24h": series.shift(24),
                "target": series,
            }
        ).dropna()
        rows.append(frame)
    path = OUTPUT / "features.csv"
    pd.concat(rows).to_csv(path)
    return str(path)


@task(execution_timeout=timedelta(hours=2))
def fit_forecaster(features_path: str) -> dict[str, Any]:
    """The heavy stage: cross-validated gradient boosting per zone, run inside the planned window.

    scikit-learn is imported here, not at the top of the file, so each DAG parse does not pay for it.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import cross_val_score

    plan = get_current_context()["ti"].xcom_pull(task_ids="fit_forecaster_carbon_window")
    features = pd.read_csv(features_path, index_col=0)
    scores = {}
    for zone, frame in features.groupby("zone"):
        model = HistGradientBoostingRegressor(max_iter=50, random_state=0)
        x, y = frame[["hour", "weekday", "month", "lag_24h"]], frame["target"]
        scores[str(zone)] = float(
            -cross_val_score(model, x, y, cv=3, scoring="neg_mean_absolute_error").mean()
        )
    return {"mae_g_per_kwh": scores, "window": plan}


@task
def load(result: dict[str, Any]) -> str:
    path = OUTPUT / "forecaster_scores.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return str(path)


with DAG(
    dag_id="carbon_batch_etl",
    description="ETL with its heavy stage held for the greenest forecast window",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["carbon-aware", "etl"],
    default_args={"retries": 0},
) as dag:
    features = transform(extract())
    heavy = fit_forecaster(features)
    behind_carbon_window(
        heavy,
        zone=ZONES,
        carbon_conn_id=CONN_ID,
        deadline_allowance=timedelta(hours=24),
        resume_overhead=RESUME_OVERHEAD,
    )
    load(heavy)
