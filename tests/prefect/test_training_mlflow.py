"""The Prefect training flow logs its emissions to MLflow (a real sqlite tracking store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from carbon_flows.training import carbon_aware_training

REPO = Path(__file__).resolve().parents[2]
JOB = f"{REPO / 'flows' / 'carbon_training.py'}:tiny_regression_job"


def test_the_training_flow_logs_its_report_epochs_and_timeline_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result: dict[str, Any] = carbon_aware_training(  # type: ignore[assignment]
        job=JOB, zone="DE", checkpoint_dir=str(tmp_path / "ckpt"), strategy="none",
        deadline="2023-06-02T23:00Z", mlflow_tracking_uri=uri,
    )  # fmt: skip
    assert result["status"] == "completed"

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("carbon-aware-training")  # the flow's name by default
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["carbon/job"].startswith("carbon-aware-training/")  # <flow>/<training id>
    assert run.data.metrics["carbon/energy_kwh"] == pytest.approx(result["report"]["energy_kwh"])
    assert run.data.metrics["carbon/emissions_g"] == pytest.approx(result["report"]["emissions_g"])
    epochs = client.get_metric_history(run.info.run_id, "carbon/epoch/steps")
    assert [(m.step, m.value) for m in sorted(epochs, key=lambda m: m.step)] == [
        (0, 16.0),
        (1, 16.0),
        (2, 16.0),
    ]
    local = tmp_path / "timeline.jsonl"
    got = client.download_artifacts(run.info.run_id, "carbon/emissions.jsonl", str(tmp_path))
    local.write_bytes(Path(got).read_bytes())
    assert Path(str(result["timeline_path"])).read_bytes() == local.read_bytes()
