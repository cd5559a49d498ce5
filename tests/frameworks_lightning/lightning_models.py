"""A tiny LightningModule, its data and a replayed grid for the Lightning callback tests (CPU, ms per step).

Shared by the tests and by `lightning_child.py`, which resumes a paused fit in a fresh process.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset

from carbon_sensors.integrations.lightning import LightningJob, ResumableLoader
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import ThresholdStrategy
from carbon_sensors.training import CarbonSession, SessionSettings

TRACE = Path(__file__).parents[1] / "fixtures" / "traces" / "DE-LU_2023-06_hourly.csv"
# the trace's life-cycle intensities: 188 g at 10:00, 210 at 14:00 (dirty until 09:00 the next day), 201 at
# 2023-06-02 15:00 (dirty until 2023-06-03 08:00): a fit of 24 half-hour steps pauses twice
START = pd.Timestamp("2023-06-01T10:30Z")
EPOCHS, BATCHES = 3, 8
STEP = timedelta(minutes=30)  # grid time per training batch


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


class GridClock:
    """Replayed grid time: every training batch takes `STEP` of it; tests move it on across pauses."""

    def __init__(self, now: pd.Timestamp = START) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now

    def seconds(self) -> float:
        return (self.now - START).total_seconds()


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


def strategy() -> ThresholdStrategy:
    """Pause above 200 g/kWh, resume below 180 on the recorded DE-LU grid of June 2023."""
    provider = TraceProvider(files={"DE": TRACE})
    return ThresholdStrategy(provider, "DE", pause_above=200, resume_below=180, max_pause=timedelta(days=2))


def session(folder: Path, clock: GridClock, pausing: ThresholdStrategy | None) -> CarbonSession:
    """Energy from a meter that runs on grid time (RAM watts x grid seconds): the same for every run."""
    meter = EstimateMeter(include_cpu=False, monotonic=clock.seconds)
    settings = SessionSettings(
        strategy=pausing, zone="DE", intensity_source=TraceProvider(files={"DE": TRACE}), clock=clock,
        monitor=PowerMonitor([meter], start=False), decision_refresh_seconds=0, measure_every_seconds=0,
        estimated_step_seconds=STEP.total_seconds(), checkpoint_every=None, stop_on_sigterm=False,
    )  # fmt: skip
    return CarbonSession(folder, settings)


def ram_watts() -> float:
    return EstimateMeter(include_cpu=False).ram_watts


def parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def wake_time(pausing: ThresholdStrategy, paused_until: pd.Timestamp) -> pd.Timestamp:
    """When a face's wake-up would find the grid clean: re-ask at each held decision's end, as the trigger does."""
    now = paused_until
    while (
        decision := pausing.decide(now, remaining_work=timedelta(hours=1), deadline=None)
    ).until is not None:
        now = decision.until
    return now
