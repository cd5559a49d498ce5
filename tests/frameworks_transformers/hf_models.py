"""A tiny torch model, its data and a replayed grid for the Hugging Face Trainer tests (CPU, ms per step).

Nothing reaches the network: the hub is switched off before transformers is imported, no weights are
downloaded (the model is a plain `nn.Module`), and `report_to="none"` keeps every logging integration out.
The grid, its clock and the session are `replayed_grid`'s, as for the Lightning tests.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from typing import Any

import torch
from replayed_grid import STEP, GridClock
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

# from `replayed_grid`'s START, 24 half-hour steps pause twice, seen after step 8 (14:30, the epoch 0/1
# boundary) and step 20 (mid-epoch 2)
EPOCHS, BATCHES, BATCH_SIZE = 3, 8, 8


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
