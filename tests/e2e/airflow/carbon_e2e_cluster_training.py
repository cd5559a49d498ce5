"""A test DAG for the CeleryExecutor e2e: training that pauses once, then survives a lost worker.

The strategy holds (re-checking every 2 s) until the test creates the file named by CARBON_E2E_GO_FILE, so
the test can move the deferred task to the other worker first. Checkpoints go every 10 steps to the S3
location in CARBON_E2E_CHECKPOINTS; one retry picks the training up after the test SIGKILLs a worker.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from airflow.sdk import DAG

from carbon_operators.training import CarbonAwareTrainingOperator
from carbon_sensors.decision import Decision

DAG_ID = "carbon_e2e_cluster_training"
STEPS = 400


def slow_training(steps: int = STEPS, step_seconds: float = 0.05) -> Any:
    """A small regression whose steps take `step_seconds` (torch imported here, not at DAG parse)."""
    import time

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_sensors.training import TrainingJob

    torch.set_num_threads(1)
    data = torch.Generator().manual_seed(0)
    x, y = torch.randn(steps * 4, 8, generator=data), torch.randn(steps * 4, 1, generator=data)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))
    loader = DataLoader(
        TensorDataset(x, y), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def slow_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time.sleep(step_seconds)
        return nn.functional.mse_loss(output, target)

    return TrainingJob(model, optimizer, loader, loss_fn=slow_mse)


class HoldUntilGo:
    """Pause (re-checked every 2 s of grid time) until the go file exists, then run."""

    def __init__(self, source: Any, zone: str, go_file: str) -> None:
        self.go_file = Path(go_file)

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision:
        if self.go_file.exists():
            return Decision.run("the test said go")
        return Decision.pause_until(now + timedelta(seconds=2), "holding until the test moves the task")


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
) as dag:
    CarbonAwareTrainingOperator(
        task_id="train",
        training_callable=slow_training,
        zone="DE",
        strategy=HoldUntilGo,
        strategy_kwargs={"go_file": os.environ.get("CARBON_E2E_GO_FILE", "/nonexistent")},
        checkpoint_dir=os.environ.get("CARBON_E2E_CHECKPOINTS") or None,
        checkpoint_every_steps=10,
        deadline="2030-01-01T00:00:00+00:00",
        decision_refresh_seconds=1.0,
        resume_overhead="1s",
    )
