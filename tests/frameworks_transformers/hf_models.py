"""A tiny torch model, its data and a replayed grid for the Hugging Face Trainer tests (CPU, ms per step).

Nothing reaches the network: the hub is switched off before transformers is imported, no weights are
downloaded (the model is a plain `nn.Module`), and `report_to="none"` keeps every logging integration out.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import (
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from carbon_sensors.integrations.transformers import HFTrainerJob
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import ThresholdStrategy
from carbon_sensors.training import CarbonSession, SessionSettings

TRACE = Path(__file__).parents[1] / "fixtures" / "traces" / "DE-LU_2023-06_hourly.csv"
# the trace's life-cycle intensities: 188 g at 10:00, 210 at 14:00 (dirty until 09:00 the next day), 201 at
# 2023-06-02 15:00 (dirty until 2023-06-03 08:00): 24 half-hour steps pause twice, seen after step 8 (14:30,
# the epoch 0/1 boundary) and step 20 (mid-epoch 2)
START = pd.Timestamp("2023-06-01T10:30Z")
EPOCHS, BATCHES, BATCH_SIZE = 3, 8, 8
STEP = timedelta(minutes=30)  # grid time per optimizer step


class Regressor(nn.Module):
    """Dropout in forward (global RNG) and the Trainer's AdamW + linear decay: every state matters."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.net(x)
        found = {"logits": out}
        if labels is not None:
            found["loss"] = nn.functional.mse_loss(out, labels)
        return found


class Pairs(Dataset[dict[str, torch.Tensor]]):
    """64 fixed samples as the dicts the Trainer's collator stacks; `noise` draws from the global RNG."""

    def __init__(self, *, noise: bool = False) -> None:
        data = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 8, generator=data), torch.randn(64, 1, generator=data)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.x[i] + 0.01 * torch.randn(8) if self.noise else self.x[i]
        return {"x": x, "labels": self.y[i]}


class GridClock:
    """Replayed grid time: every optimizer step takes `STEP` of it; tests move it on across pauses."""

    def __init__(self, now: pd.Timestamp = START) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now

    def seconds(self) -> float:
        return (self.now - START).total_seconds()


class GridSteps(TrainerCallback):  # type: ignore[misc]
    """Moves the grid clock on by one step before each optimizer step, so each step lasts `STEP`."""

    def __init__(self, clock: GridClock) -> None:
        self.clock = clock

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.clock.now += STEP


def job(
    init_seed: int, clock: GridClock, *, seed: int = 7, noise: bool = False, max_steps: int = -1
) -> HFTrainerJob:
    """3 epochs of 8 batches; a fresh model (initialised from `init_seed`) and Trainer per attempt."""

    def make_trainer(callbacks: list[TrainerCallback], output_dir: str) -> Trainer:
        torch.manual_seed(init_seed)
        args = TrainingArguments(
            output_dir=output_dir, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH_SIZE,
            learning_rate=0.01, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
            seed=seed, disable_tqdm=True, dataloader_num_workers=0, max_steps=max_steps,
        )  # fmt: skip
        trainer = Trainer(
            model=Regressor(), args=args, train_dataset=Pairs(noise=noise),
            callbacks=[GridSteps(clock), *callbacks],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        return trainer

    return HFTrainerJob(make_trainer)


def strategy() -> ThresholdStrategy:
    """Pause above 200 g/kWh, resume below 180 on the recorded DE-LU grid of June 2023."""
    provider = TraceProvider(files={"DE": TRACE})
    return ThresholdStrategy(provider, "DE", pause_above=200, resume_below=180, max_pause=timedelta(days=2))


def session(
    folder: Path, clock: GridClock, pausing: ThresholdStrategy | None, total: int | None, **extra: Any
) -> CarbonSession:
    """Energy from a meter that runs on grid time (RAM watts x grid seconds): the same for every run."""
    meter = EstimateMeter(include_cpu=False, monotonic=clock.seconds)
    settings: dict[str, Any] = {
        "strategy": pausing, "zone": "DE", "intensity_source": TraceProvider(files={"DE": TRACE}), "clock": clock,
        "monitor": PowerMonitor([meter], start=False), "decision_refresh_seconds": 0, "measure_every_seconds": 0,
        "estimated_step_seconds": STEP.total_seconds(), "checkpoint_every": None, "stop_on_sigterm": False,
    }  # fmt: skip
    return CarbonSession(folder, SessionSettings(**{**settings, **extra}), total_steps=total)


def parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def wake_time(pausing: ThresholdStrategy, paused_until: pd.Timestamp) -> pd.Timestamp:
    """When a face's wake-up finds the grid clean: re-ask at each held decision's end, as the trigger does."""
    now = paused_until
    while (
        decision := pausing.decide(now, remaining_work=timedelta(hours=1), deadline=None)
    ).until is not None:
        now = decision.until
    return now
