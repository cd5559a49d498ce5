"""A test DAG for the live Airflow e2e: threshold-paused training against a tight deadline.

The threshold (0 gCO2eq/kWh) is always exceeded and its re-check is a day, so the only thing that ends the pause
is the deadline guard: it cuts the hold at the latest start (deadline - work - resume overhead), and the woken
task must train to the end by the deadline without pausing again. The test passes the deadline in the run's
conf (grid time, computed from the replay clock when it triggers the run).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG

from carbon_operators.training import CarbonAwareTrainingOperator

DAG_ID = "carbon_e2e_tight_deadline"


def tiny_training(steps: int = 300) -> Any:
    """A small regression on random data (torch imported here, not at DAG parse)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_sensors.training import TrainingJob

    data = torch.Generator().manual_seed(0)
    x, y = torch.randn(steps * 4, 8, generator=data), torch.randn(steps * 4, 1, generator=data)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    return TrainingJob(model, optimizer, loader, loss_fn=nn.functional.mse_loss)


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
) as dag:
    CarbonAwareTrainingOperator(
        task_id="train",
        training_callable=tiny_training,
        zone="DE",
        strategy="threshold",
        strategy_kwargs={"pause_above": 0.0, "resume_below": 0.0, "max_pause": "30d", "recheck": "1d"},
        checkpoint_dir=os.environ.get("CARBON_E2E_TIGHT_CHECKPOINTS") or None,
        deadline="{{ dag_run.conf['deadline'] }}",
        resume_overhead=os.environ.get("CARBON_E2E_TIGHT_OVERHEAD", "40s"),
    )
