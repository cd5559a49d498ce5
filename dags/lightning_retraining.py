"""Retraining with PyTorch Lightning, carbon-aware: the fit pauses through dirty hours and resumes exactly.

`retrain` builds a Lightning fit (a small classifier on scikit-learn's handwritten digits, no download)
and hands it to `CarbonAwareTrainingOperator` as a `LightningJob`. When the grid rises above `pause_above`
the `CarbonAwareCallback` checkpoints the fit (model, optimizer, loop, loader position and RNGs) and stops
the Trainer; the task defers (no worker held) and, below `resume_below`, resumes a fresh Trainer with
`fit(ckpt_path=...)` from that checkpoint.

Needs the `lightning` extra on the workers (`pip install 'carbon-aware-trainer[lightning]'`). Offline by
default: the embedded real 2023 Electricity Maps trace; give a `carbon_intensity` connection for live data.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG

from carbon_operators.training import CarbonAwareTrainingOperator

if TYPE_CHECKING:
    from carbon_sensors.integrations.lightning import LightningJob

ZONE = os.environ.get("CARBON_AWARE_ZONE", "DE")
CONN_ID = os.environ.get("CARBON_AWARE_CONN_ID") or None  # None: embedded traces
CHECKPOINTS = os.environ.get("CARBON_AWARE_CHECKPOINT_DIR") or None  # None: a per-run temp folder
EPOCHS = int(os.environ.get("CARBON_AWARE_EPOCHS", "10"))


def build_lightning_digits(epochs: int = EPOCHS, seed: int = 7) -> LightningJob:
    """A Lightning classifier of the 1,797 8x8 digits; a fresh Trainer per attempt, as the operator asks.

    lightning, torch and scikit-learn are imported here, in the task: the dag-processor imports this file on
    every parse, and they cost seconds (Airflow's top-level code guidance).
    """
    import lightning.pytorch as pl
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_sensors.integrations.lightning import LightningJob, ResumableLoader

    class Digits(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            images, labels = batch
            loss = nn.functional.cross_entropy(self.net(images), labels)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    torch.manual_seed(seed)
    model = Digits()
    data = DataLoader(
        TensorDataset(images, labels),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )

    def make_trainer(callbacks: list[pl.Callback]) -> pl.Trainer:
        return pl.Trainer(
            max_epochs=epochs, accelerator="cpu", devices=1, callbacks=callbacks, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip

    # ResumableLoader: a pause mid-epoch resumes at the next batch with the same shuffle (a plain DataLoader
    # would restart the epoch's iterator)
    return LightningJob(
        model, make_trainer, train_dataloaders=ResumableLoader(data), total_steps=epochs * len(data)
    )


with DAG(
    dag_id="lightning_retraining",
    description="Retrain a PyTorch Lightning model with carbon-aware pauses (defer and resume by checkpoint)",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["carbon-aware", "training", "lightning"],
    default_args={"retries": 0},
) as dag:
    CarbonAwareTrainingOperator(
        task_id="retrain",
        training_callable=build_lightning_digits,
        zone=ZONE,
        carbon_conn_id=CONN_ID,
        strategy="threshold",
        strategy_kwargs={
            "pause_above": 300.0,
            "resume_below": 250.0,
            "max_pause": timedelta(hours=18),
            "recheck": timedelta(hours=1),
        },
        checkpoint_dir=CHECKPOINTS,
        deadline_allowance=timedelta(days=3),
    )
