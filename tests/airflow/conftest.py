"""Airflow unit tests run without a metadata database; Airflow must not touch ~/airflow, so AIRFLOW_HOME is
pointed at a temporary folder before anything imports airflow."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import datetime

import pandas as pd
import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carbon-airflow-unit-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_fixtures import DefineConnection, ReplayAt

from carbon_sensors.replay import Replay


@pytest.fixture
def replay_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayAt]:
    """Set replay for this process (worker and in-line triggerer alike): trace `start` is now, `speed` x faster."""

    def start(trace_start: str, speed: float = 1.0, wall_start: datetime | None = None) -> Replay:
        replay = Replay(pd.Timestamp(trace_start), pd.Timestamp(wall_start or pd.Timestamp.now("UTC")), speed)
        for name, value in replay.to_env().items():
            monkeypatch.setenv(name, value)
        return replay

    yield start


@pytest.fixture
def carbon_conn(monkeypatch: pytest.MonkeyPatch) -> DefineConnection:
    """Define a `carbon_intensity` connection through the environment (no database needed)."""

    def define(conn_id: str = "carbon_test", **fields: object) -> str:
        import json

        extra = {k: v for k, v in fields.items() if k not in ("host", "login", "password")}
        conn: dict[str, object] = {"conn_type": "carbon_intensity", "extra": extra}
        conn.update({k: v for k, v in fields.items() if k in ("host", "login", "password")})
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define
