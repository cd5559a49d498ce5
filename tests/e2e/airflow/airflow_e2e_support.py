"""Helpers for the end-to-end Airflow tests: load an example DAG by path, read a run's XComs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pandas as pd

from carbon_sensors.replay import Replay

REPO = Path(__file__).resolve().parents[3]
DAGS = REPO / "dags"


def load_dag(filename: str) -> Any:
    """Import `dags/<filename>` as Airflow's DAG processor would (by path) and return its `dag`."""
    spec = importlib.util.spec_from_file_location(f"carbon_e2e_{Path(filename).stem}", DAGS / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def xcoms(dag_id: str, run_id: str) -> dict[str, Any]:
    """Every task's return value in one run, read from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == "return_value")
            .all()
        )
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


def replay_env(trace_start: str, speed: float, starts_in_seconds: float) -> dict[str, str]:
    """Replay settings whose trace start comes `starts_in_seconds` from now (earlier trace hours until then)."""
    wall = pd.Timestamp.now("UTC") + pd.Timedelta(seconds=starts_in_seconds)
    return Replay(pd.Timestamp(trace_start), wall, speed).to_env()


def set_env(values: dict[str, str]) -> dict[str, str | None]:
    """Set environment variables; returns the previous values for `restore_env`."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    return previous


def restore_env(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
