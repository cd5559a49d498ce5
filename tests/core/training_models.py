"""A tiny training job and small strategies for the training-runner tests (CPU, a few ms per run)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from carbon_sensors.decision import Decision
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.training import TrainingJob

START = pd.Timestamp("2023-06-01T00:00Z")


class NoisyDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Adds noise from the global torch RNG in __getitem__, as random augmentations do."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.01 * torch.randn(self.x.shape[1]), self.y[i]


def build_job(
    init_seed: int, *, epochs: int = 3, loader_generator: bool = False, noisy: bool = False
) -> TrainingJob:
    """8 batches per epoch, shuffled; dropout and SGD momentum and a StepLR, so every state matters."""
    data = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=data), torch.randn(64, 1, generator=data)
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    dataset: Dataset[Any] = NoisyDataset(x, y) if noisy else TensorDataset(x, y)
    generator = torch.Generator().manual_seed(42) if loader_generator else None
    loader = DataLoader(dataset, batch_size=8, shuffle=True, generator=generator)
    return TrainingJob(
        model, optimizer, loader, loss_fn=nn.functional.mse_loss, scheduler=scheduler, epochs=epochs
    )


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


class FakeClock:
    """A clock the test moves; `tick` advances it on every read (to let in-process waits finish fast)."""

    def __init__(self, now: pd.Timestamp = START, tick: timedelta = timedelta(0)) -> None:
        self.now, self.tick = now, tick

    def __call__(self) -> pd.Timestamp:
        current = self.now
        self.now = self.now + self.tick
        return current


class PauseAtSteps:
    """Pauses once at each given step count (read through `progress`), for `pause_for`; else runs."""

    def __init__(self, steps: set[int], pause_for: timedelta = timedelta(hours=1)) -> None:
        self.pending = set(steps)
        self.pause_for = pause_for
        self.progress: Callable[[], int] = lambda: 0
        self.calls: list[tuple[pd.Timestamp, timedelta, pd.Timestamp | None]] = []

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision:
        self.calls.append((now, remaining_work, deadline))
        step = self.progress()
        if step in self.pending:
            self.pending.discard(step)
            return Decision.pause_until(
                now + self.pause_for, f"scripted pause at step {step}", intensity=400.0
            )
        return Decision.run("scripted: run")


class AlwaysPause:
    """Always says pause for `hours` (to test the runner's deadline guard)."""

    def __init__(self, hours: float = 10.0) -> None:
        self.hours = hours

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision:
        return Decision.pause_until(now + timedelta(hours=self.hours), "grid is dirty", fallback=True)


def parameters(job: TrainingJob) -> list[torch.Tensor]:
    return [p.detach().clone() for p in job.model.parameters()]


class StepMeter:
    """An energy meter the training loop drives: `joules_per_step` each `advance()`, so totals are exact."""

    def __init__(self, joules_per_step: float = 2.0) -> None:
        self.joules_per_step, self.joules = joules_per_step, 0.0

    def advance(self) -> None:
        self.joules += self.joules_per_step

    def devices(self) -> dict[str, str]:
        return {"cpu": "step-meter"}

    def read_joules(self) -> dict[str, float]:
        return {"cpu": self.joules}

    def notes(self) -> list[str]:
        return []

    def close(self) -> None:
        self.closed = True


DIRTY_HOURS = (2, 5)  # of the replayed trace below: training meets the dirty grid twice


def dirty_clean_trace(hours: int = 12) -> TraceProvider:
    """A replayed hourly trace of zone "XX" around START: clean (150 g) but for DIRTY_HOURS (450 g) after START."""
    from carbon_sensors.signal import make_signal

    index = pd.date_range(START - pd.Timedelta(hours=3), periods=hours + 3, freq="1h")
    values = pd.Series([450.0 if h - 3 in DIRTY_HOURS else 150.0 for h in range(hours + 3)], index=index)
    return TraceProvider(signals={"XX": make_signal(values, zone="XX", source="dirty-clean replay")})
