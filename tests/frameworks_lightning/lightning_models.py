"""A tiny LightningModule, its data and a replayed grid for the Lightning callback tests (CPU, ms per step).

Shared by the tests and by `lightning_child.py`, which resumes a paused fit in a fresh process. The grid,
its clock and the session are `replayed_grid`'s, as for the Hugging Face tests.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from replayed_grid import STEP, GridClock
from torch import nn
from torch.utils.data import DataLoader, Dataset

from carbon_sensors.integrations.lightning import LightningJob, ResumableLoader
from carbon_sensors.power import EstimateMeter

EPOCHS, BATCHES = 3, 8  # 24 steps from replayed_grid's START: the fit pauses twice


class NoisyDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Adds noise from the global torch RNG in __getitem__, as random augmentations do."""

    def __init__(self) -> None:
        data = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 8, generator=data), torch.randn(64, 1, generator=data)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.01 * torch.randn(8), self.y[i]


class Regressor(pl.LightningModule):
    """Dropout, SGD momentum and a per-epoch StepLR: every piece of state matters for bitwise equality."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        loss = nn.functional.mse_loss(self.net(inputs), targets)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


class GridHours(Callback):
    """Moves the grid clock on by one step per batch (before the batch, so the step lasts `STEP`)."""

    def __init__(self, clock: GridClock) -> None:
        self.clock = clock

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int
    ) -> None:
        self.clock.now += STEP


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def loader(*, plain: bool = False, loader_generator: bool = False) -> Any:
    gen = torch.Generator().manual_seed(42) if loader_generator else None
    data = DataLoader(NoisyDataset(), batch_size=BATCHES, shuffle=True, generator=gen)
    return data if plain else ResumableLoader(data)


def job(init_seed: int, clock: GridClock, **loader_kw: bool) -> LightningJob:
    """The fit: 3 epochs of 8 batches; a fresh Trainer per attempt, as every face builds it."""
    torch.manual_seed(init_seed)
    model = Regressor()

    def make_trainer(callbacks: list[Callback]) -> pl.Trainer:
        return pl.Trainer(
            max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[GridHours(clock), *callbacks],
        )  # fmt: skip

    return LightningJob(model, make_trainer, train_dataloaders=loader(**loader_kw))


def ram_watts() -> float:
    return EstimateMeter(include_cpu=False).ram_watts
