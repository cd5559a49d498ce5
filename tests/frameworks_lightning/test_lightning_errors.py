"""The Lightning job refuses what would break a pause: a checkpoint without session state, min_epochs."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback
from lightning_models import Regressor, job, loader
from replayed_grid import GridClock, session

from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.integrations.lightning import LightningJob


def trainer(callbacks: list[Callback], min_epochs: int | None = None) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=1, min_epochs=min_epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )  # fmt: skip


def test_a_checkpoint_without_session_state_is_refused_by_name(tmp_path: Path) -> None:
    plain = trainer([])
    plain.fit(Regressor(), train_dataloaders=loader())
    foreign = tmp_path / "foreign.ckpt"
    plain.save_checkpoint(foreign)
    clock = GridClock()
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt holds no carbon-aware session state"):
        job(1, clock).train(session(tmp_path / "ckpt", clock, None), foreign)


def test_min_epochs_is_refused_and_a_trainer_without_the_callback_too(tmp_path: Path) -> None:
    clock = GridClock()
    held = LightningJob(Regressor(), lambda cbs: trainer(cbs, min_epochs=2), train_dataloaders=loader())
    with pytest.raises(InvalidInputError, match="min_epochs=2"):
        held.train(session(tmp_path / "a", clock, None), None)
    dropped = LightningJob(Regressor(), lambda cbs: trainer([]), train_dataloaders=loader())
    with pytest.raises(InvalidInputError, match="must pass the callbacks it is given"):
        dropped.train(session(tmp_path / "b", clock, None), None)
