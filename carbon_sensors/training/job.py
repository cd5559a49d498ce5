"""What the user hands the runner (`TrainingJob`) and what the runner hands back (`TrainingResult`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from carbon_sensors.decision import Decision
from carbon_sensors.emissions import EmissionsReport
from carbon_sensors.errors import InvalidInputError

if TYPE_CHECKING:
    from carbon_sensors.training.session import CarbonSession

StepFn = Callable[[torch.nn.Module, Any], torch.Tensor]
LossFn = Callable[[Any, Any], torch.Tensor]
SCHEDULER_INTERVALS = ("epoch", "step")


@dataclass
class TrainingJob:
    """A model, its optimizer and data, and how one step computes the loss.

    `step_fn(model, batch)` returns the loss; or `loss_fn(outputs, targets)` for `(inputs, targets)` batches.
    The runner does zero_grad / backward / optimizer step (through `grad_scaler` for mixed precision), and
    steps the scheduler once per epoch or per step (`scheduler_interval`).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: Iterable[Any]
    step_fn: StepFn | None = None
    loss_fn: LossFn | None = None
    scheduler: Any = (
        None  # torch.optim.lr_scheduler.LRScheduler or ReduceLROnPlateau-like; needs state_dict()
    )
    epochs: int = 1
    max_steps: int | None = None
    scheduler_interval: str = "epoch"
    grad_scaler: Any = None  # torch.amp.GradScaler

    def __post_init__(self) -> None:
        if (self.step_fn is None) == (self.loss_fn is None):
            raise InvalidInputError(
                "give exactly one of step_fn(model, batch) -> loss or loss_fn(outputs, targets)"
            )
        if self.epochs < 1:
            raise InvalidInputError(f"epochs={self.epochs} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInputError(
                f"max_steps={self.max_steps} must be at least 1 (or None for whole epochs)"
            )
        if self.scheduler_interval not in SCHEDULER_INTERVALS:
            raise InvalidInputError(
                f"scheduler_interval={self.scheduler_interval!r} is not valid; use one of {list(SCHEDULER_INTERVALS)}"
            )

    def steps_per_epoch(self) -> int | None:
        try:
            return len(self.data_loader)  # type: ignore[arg-type]
        except TypeError:
            return None

    def total_steps(self) -> int | None:
        """Steps the whole job takes, when the loader has a length or max_steps is set."""
        per_epoch = self.steps_per_epoch()
        by_epochs = None if per_epoch is None else per_epoch * self.epochs
        candidates = [n for n in (by_epochs, self.max_steps) if n is not None]
        return min(candidates) if candidates else None

    def train(self, session: CarbonSession, resume_from: str | Path | None) -> TrainingResult:
        """Train one attempt in `session` with `TrainingRunner` (the `Trainable` protocol of the faces)."""
        from carbon_sensors.training.trainable import train_job  # the runner imports this module

        return train_job(self, session, resume_from)

    def loss(self, batch: Any) -> torch.Tensor:
        if self.step_fn is not None:
            return self.step_fn(self.model, batch)
        assert self.loss_fn is not None
        inputs, targets = batch
        return self.loss_fn(self.model(inputs), targets)


@dataclass
class TrainingResult:
    """How a `run()` ended; `to_dict()` is small JSON (paths and numbers, never tensors) for XCom/artifacts."""

    status: str  # "completed" | "paused" | "stopped"
    paused_until: pd.Timestamp | None
    checkpoint_path: str | None
    steps_done: int
    epoch: int
    report: EmissionsReport
    decision: Decision | None
    timeline_path: str | None = None
    last_loss: float | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    power_notes: list[str] = field(default_factory=list)
    started_at_step: int = 0  # where this attempt began: > 0 when it resumed a checkpoint

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "paused_until": None if self.paused_until is None else self.paused_until.isoformat(),
            "checkpoint_path": self.checkpoint_path,
            "steps_done": self.steps_done,
            "epoch": self.epoch,
            "last_loss": self.last_loss,
            "timeline_path": self.timeline_path,
            "decision": None if self.decision is None else self.decision.to_dict(),
            "report": self.report.to_dict(),
            "epochs": list(self.epochs),
            "power_notes": list(self.power_notes),
            "started_at_step": self.started_at_step,
        }
