"""The training operator logs to MLflow: one run per task instance across a deferral and a worker change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from airflow_fixtures import ReplayAt
from airflow_training_jobs import DirtyWindow, tiny_job
from mlflow import MlflowClient

from carbon_operators.training import CarbonAwareTrainingOperator
from carbon_operators.triggers import ResumeAtTrigger
from carbon_sensors.integrations.mlflow import RUN_FILE

DIRTY = {"start": "2023-06-05T16:00Z", "end": "2023-06-06T09:00Z"}


def operator(tmp_path: Path, uri: str) -> CarbonAwareTrainingOperator:
    return CarbonAwareTrainingOperator(
        task_id="train", training_callable=tiny_job, zone="DE", strategy=DirtyWindow, strategy_kwargs=DIRTY,
        checkpoint_dir=str(tmp_path / "ckpt"), deadline="2023-06-07T00:00Z", decision_refresh_seconds=0.0,
        mlflow_tracking_uri=uri, mlflow_experiment="nightly",
    )  # fmt: skip


def test_a_deferred_training_logs_one_mlflow_run_even_on_another_worker(
    tmp_path: Path, replay_at: ReplayAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    no_context: Any = {}
    replay_at("2023-06-05T17:00Z")  # dirty: pauses after the first step
    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, uri).execute(no_context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ResumeAtTrigger)
    folder = tmp_path / "ckpt" / "dag" / "manual" / "train"
    (folder / RUN_FILE).unlink()  # the resume lands on a worker that has the checkpoint, not this file

    replay_at("2023-06-06T09:30Z")
    event = {"moment": "2026-01-01T00:00:00+00:00", "state": dict(trigger.state)}
    result = operator(tmp_path, uri).execute_complete(no_context, event=event)
    assert result["status"] == "completed" and result["deferrals"] == 1

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("nightly")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["carbon/job"] == "dag/manual/train" and run.info.status == "FINISHED"
    energy = client.get_metric_history(run.info.run_id, "carbon/energy_kwh")
    assert [m.step for m in energy] == [
        2,
        16,
    ]  # the paused attempt's report (after its first timed step), the final one
    assert energy[-1].value == pytest.approx(result["report"]["energy_kwh"])
    epochs = client.get_metric_history(run.info.run_id, "carbon/epoch/steps")
    assert sorted((m.step, m.value) for m in epochs) == [(0, 8.0), (1, 8.0)]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "carbon")]
    assert "carbon/emissions.jsonl" in artifacts
