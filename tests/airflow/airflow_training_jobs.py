"""A tiny PyTorch job and a scripted strategy for the training-operator tests (CPU, milliseconds)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from carbon_sensors.decision import Decision
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.training import TrainingJob


def tiny_job(epochs: int = 2, *, fail_at_step: int | None = None) -> TrainingJob:
    """8 batches per epoch of a small regression; `fail_at_step` makes the step raise (bad user code)."""
    data = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=data), torch.randn(64, 1, generator=data)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(
        TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2)
    )
    steps = 0

    def step(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        nonlocal steps
        steps += 1
        if fail_at_step is not None and steps >= fail_at_step:
            raise RuntimeError(f"CUDA-like failure at step {steps}")
        inputs, targets = batch
        return nn.functional.mse_loss(net(inputs), targets)

    return TrainingJob(model, optimizer, loader, step_fn=step, epochs=epochs)


def broken_builder() -> TrainingJob:
    raise FileNotFoundError("no such dataset: /data/missing.parquet")


class DirtyWindow:
    """Pauses during a fixed grid-time window [start, end) and runs outside it: a scripted grid."""

    def __init__(self, source: IntensitySource, zone: str, *, start: str, end: str) -> None:
        self.zone = zone
        self.start, self.end = pd.Timestamp(start), pd.Timestamp(end)

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision:
        if self.start <= now < self.end:
            return Decision.pause_until(self.end, f"scripted dirty window until {self.end.isoformat()}")
        return Decision.run("outside the scripted dirty window")
