"""CarbonAwareTrainingOperator runs a Lightning fit through `dag.test()`: it pauses on a dirty grid, defers
(the trigger runs in line), resumes a fresh Trainer from the checkpoint and ends bitwise equal to an
uninterrupted fit. The job is the example DAG's `build_lightning_digits`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from airflow import settings
from airflow_fixtures import ReplayAt

from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.training import CarbonSession, SessionSettings

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2  # 57 batches each


@pytest.fixture(scope="module")
def metadata_db() -> Path:
    """`dag.test()` keeps its runs in the metadata database: migrate the tests' SQLite one (once)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    marker = home / ".carbon-migrated"  # the marker the e2e tests' fixture writes too
    if not marker.exists():
        migrate = [sys.executable, "-m", "airflow", "db", "migrate"]
        subprocess.run(migrate, check=True, capture_output=True, timeout=300)
        marker.touch()
    return home


DAG_FILE = """
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from airflow.sdk import DAG
from lightning_retraining import build_lightning_digits

from carbon_operators.training import CarbonAwareTrainingOperator
from carbon_sensors.decision import Decision


class HoldTwoHours:
    \"\"\"A scripted grid: dirty for two grid hours from the first decision (kept in `marker`), then clean.\"\"\"

    def __init__(self, source: object, zone: str, *, marker: str) -> None:
        self.marker = Path(marker)

    def decide(self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: object) -> Decision:
        if not self.marker.exists():
            self.marker.write_text((now + timedelta(hours=2)).isoformat())
        until = pd.Timestamp(self.marker.read_text())
        if now < until:
            return Decision.pause_until(until, "scripted: dirty for two hours")
        return Decision.run("scripted: clean")


with DAG(dag_id="lightning_defers", schedule=None, start_date=datetime(2025, 1, 1, tzinfo=UTC)) as dag:
    CarbonAwareTrainingOperator(
        task_id="train", training_callable=build_lightning_digits, op_kwargs={{"epochs": {epochs}}}, zone="DE",
        strategy=HoldTwoHours, strategy_kwargs={{"marker": {marker!r}}}, checkpoint_dir={checkpoints!r},
        deadline="2023-06-30T00:00Z", decision_refresh_seconds=0.0, resume_overhead="1s",
    )
"""


def load(path: Path) -> ModuleType:
    """Import a DAG file by path, as Airflow's DAG processor does."""
    spec = importlib.util.spec_from_file_location(f"carbon_test_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def return_value(dag_id: str, run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as db:
        row = (
            db.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value")
            .one()
        )
        return XComModel.deserialize_value(row)


def test_a_lightning_job_defers_and_resumes_bitwise_under_dag_test(
    metadata_db: Path, tmp_path: Path, replay_at: ReplayAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = load(REPO / "dags" / "lightning_retraining.py").build_lightning_digits
    reference = build(epochs=EPOCHS)
    done = reference.train(
        CarbonSession(
            tmp_path / "ref", SessionSettings(monitor=PowerMonitor([EstimateMeter()], start=False))
        ),
        None,
    )
    assert (done.status, done.steps_done) == ("completed", EPOCHS * 57)

    # a DAG folder of its own (dag.test() syncs the DAG's bundle to the database first)
    dags = tmp_path / "dags"
    dags.mkdir()
    text = DAG_FILE.format(
        epochs=EPOCHS, marker=str(tmp_path / "dirty-until"), checkpoints=str(tmp_path / "ckpt")
    )
    (dags / "lightning_defers.py").write_text(text, encoding="utf-8")
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(dags))
    monkeypatch.syspath_prepend(str(REPO / "dags"))
    # an hour of grid time per wall second: the two dirty hours hold the deferred task about two seconds
    replay_at("2023-06-05T17:00Z", speed=3600)
    dag = load(dags / "lightning_defers.py").dag
    run = dag.test()
    assert run.state == "success"
    train = return_value(dag.dag_id, run.run_id, "train")
    assert (train["status"], train["steps_done"], train["epoch"]) == ("completed", EPOCHS * 57, EPOCHS)
    # paused at the first decision (after the first timed steps, mid-epoch 0) and resumed there
    assert train["deferrals"] == 1 and 0 < train["started_at_step"] < 57
    report = train["report"]
    assert report["pauses"] == 1 and report["paused_seconds"] > 0 and report["energy_kwh"] > 0
    assert report["attempts"] == 2
    checkpoint = torch.load(train["checkpoint_path"], map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == EPOCHS * 57  # a Lightning checkpoint, with the session inside
    want = reference.model.state_dict()
    assert checkpoint["state_dict"].keys() == want.keys()
    for name, tensor in checkpoint["state_dict"].items():
        assert torch.equal(tensor, want[name]), name
