"""Carbon-aware PyTorch Lightning 2.x: a callback that drives a `CarbonSession`, and a job the faces run.

`CarbonAwareCallback` measures energy per batch and per epoch, asks the session's strategy at optimizer-step
boundaries and, on a pause, writes a Lightning checkpoint (`trainer.save_checkpoint`, then renamed into place
as `checkpoint-<step>.pt` with `LATEST`, the session's state and every global RNG inside it) and stops the
trainer (`trainer.should_stop`). `LightningJob` is a `Trainable`: each attempt builds a fresh `Trainer` with
the callback and resumes with `fit(ckpt_path=...)`, so the Airflow operator and the Prefect flow defer or
reschedule a Lightning job like any other.

    job = LightningJob(model, lambda callbacks: L.Trainer(max_epochs=3, callbacks=callbacks),
                       train_dataloaders=ResumableLoader(DataLoader(data, batch_size=32, shuffle=True)))
    result = job.train(CarbonSession("ckpt", SessionSettings(strategy=..., zone="GB")), "latest")

What resumes exactly (read from Lightning 2.6's loops):
- Model, optimizers, LR schedulers, precision plugin and loop progress: Lightning's checkpoint.
- Global RNGs (Python, NumPy, torch CPU/CUDA): this callback's state, restored just before the first
  resumed batch (Lightning itself saves none).
- The data position mid-epoch: only for a loader with `state_dict()`/`load_state_dict()` (Lightning's
  `_Stateful`): the fit loop saves its state in the checkpoint and loads it before the resumed epoch's
  iterator is made. `ResumableLoader` makes a map-style `DataLoader` such a loader (it replays the epoch's
  shuffle from its starting RNG and skips the batches done), as is torchdata's `StatefulDataLoader`.
  A plain `DataLoader` (or any iterable without that interface) cannot resume exactly mid-epoch:
  Lightning starts a new iterator from the first batch, with a new shuffle, and ends the epoch after the
  batches still owed (it warns "your dataloader is not resumable"), so the resumed epoch sees other
  samples. A pause at an epoch boundary resumes exactly with any loader.
Not exact either: a strategy that writes a checkpoint folder (DeepSpeed, sharded FSDP) is not supported;
gradient accumulation pauses only at optimizer steps; validation state (`val_check_interval` mid-epoch) and
metric-based (plateau) schedulers follow Lightning's own resume rules.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "carbon_sensors.integrations.lightning needs PyTorch Lightning 2.x: "
        "pip install 'carbon-aware-trainer[lightning]' (the package `lightning`)"
    ) from exc

import torch
from torch.utils.data import DataLoader

from carbon_sensors.atomic import atomic_write_text
from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.training.checkpoint import (
    LATEST,
    capture_rng,
    checkpoint_name,
    find_checkpoint,
    list_checkpoints,
    restore_rng,
)
from carbon_sensors.training.job import TrainingResult
from carbon_sensors.training.session import LATEST_CHECKPOINT, CarbonSession

log = logging.getLogger(__name__)

__all__ = ["CarbonAwareCallback", "LightningJob", "ResumableLoader"]

TrainerFactory = Callable[[list[Callback]], pl.Trainer]
"""Builds a fresh Trainer that uses the callbacks it is given (`Trainer(callbacks=callbacks, ...)`)."""

# Per-batch hooks this callback leaves empty. Lightning's dispatcher (`trainer/call.py:_call_callback_hooks`)
# skips a hook attribute that is not callable, so they are set to None on the instance: an empty callback,
# which gets all of them, costs about 40 us per step on the 2-core development machine (benchmarks/overhead.py).
_UNUSED_BATCH_HOOKS = (
    "on_train_batch_start",
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_validation_batch_start",
    "on_validation_batch_end",
)


class CarbonAwareCallback(Callback):
    """Drive a `CarbonSession` from Lightning's hooks; `result` holds how the attempt ended.

    :param session: the attempt's session (not begun: the callback begins it at `on_train_start`).
    :param fresh: without a checkpoint state, start a new timeline (True) or keep earlier attempts' (False).
    :param checkpoint: the checkpoint `fit(ckpt_path=...)` resumes, which must hold this callback's state.
    """

    def __init__(self, session: CarbonSession, *, fresh: bool = True, checkpoint: Path | None = None) -> None:
        self.session = session
        self.fresh = fresh
        self.checkpoint = checkpoint
        self.result: TrainingResult | None = None
        self._loaded: dict[str, Any] | None = None
        self._begun = False
        self._generators: list[torch.Generator] = []  # the training loaders' own (Lightning saves none)
        for hook in _UNUSED_BATCH_HOOKS:
            setattr(self, hook, None)

    # --- Lightning's state of this callback (inside every checkpoint Lightning writes) ---------------------
    def state_dict(self) -> dict[str, Any]:
        if not self._begun:
            return {}
        return {"carbon": self.session.state_dict(), "rng": capture_rng(self._generators)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict) or None

    # --- beginning -----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After Lightning restored everything: begin the session and put the saved RNG states back."""
        self._begin(trainer)
        if self.session.should_pause():  # a resume the grid still holds
            self._pause(trainer)

    def _begin(self, trainer: pl.Trainer) -> None:
        if self._begun:
            return
        if trainer.min_epochs or trainer.min_steps:
            raise InvalidInputError(
                f"Trainer(min_epochs={trainer.min_epochs}, min_steps={trainer.min_steps}) would train on past a "
                "carbon pause; leave both unset with CarbonAwareCallback"
            )
        self._generators = [g for dl in _train_loaders(trainer) for g in _loader_generators(dl)]
        loaded = self._loaded
        if loaded is not None:
            self.session.begin(loaded["carbon"], fresh=False, source=self.checkpoint)
            restore_rng(loaded["rng"], self._generators)
        elif self.checkpoint is not None:
            raise CheckpointError(
                f"{self.checkpoint} holds no carbon-aware session state; resume from a checkpoint "
                "CarbonAwareCallback wrote (or start afresh with resume_from=None)"
            )
        else:
            self.session.begin(None, fresh=self.fresh)
        self._begun = True
        if self.session.total_steps is None:
            self.session.total_steps = _total_batches(trainer)

    # --- between batches -----------------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.session.ended:
            return
        self.session.step(_loss_of(outputs))
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches or bool(
            trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        )
        if last_of_epoch or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # the epoch's end decides (Lightning resumes there best); or gradients are accumulating
        if not _fit_done(trainer, last_of_epoch=False):
            self._act(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the session's epoch, then decide: a checkpoint here is Lightning's usual end-of-epoch one."""
        if self.session.ended:
            return  # the pause stopped the epoch short; this checkpoint-free end is discarded
        if self.session.epoch == trainer.current_epoch:
            self._end_epoch(trainer)
        if not _fit_done(trainer, last_of_epoch=True):
            self._act(trainer)

    def _act(self, trainer: pl.Trainer) -> None:
        if self.session.should_pause():
            self._pause(trainer)
        elif self.session.checkpoint_due():
            self._save(trainer)

    def _end_epoch(self, trainer: pl.Trainer) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.session.end_epoch(**metrics)

    # --- ending --------------------------------------------------------------------------------------------
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.session.ended:  # the final model, like the runner's, holding the whole attempt
            self.result = self.session.finish(write=lambda: self._write(trainer))

    def conclude(self, trainer: pl.Trainer) -> TrainingResult:
        """The attempt's result; a fit that trained nothing (a completed checkpoint resumed) ends completed."""
        if self.result is None:
            self._begin(trainer)
            self.result = self.session.finish()
        return self.result

    def _pause(self, trainer: pl.Trainer) -> None:
        self.result = self.session.pause(write=lambda: self._write(trainer))
        trainer.should_stop = True

    def _save(self, trainer: pl.Trainer) -> None:
        """A periodic checkpoint: written, then published by the session."""
        self.session.checkpointed(self._write(trainer))

    def _write(self, trainer: pl.Trainer) -> Path:
        """Lightning's checkpoint of this step, renamed into place atomically; LATEST then names it."""
        session = self.session
        folder = session.checkpoint_dir
        final = folder / checkpoint_name(session.steps_done)
        temp = folder / f".{final.name}.{os.getpid()}.tmp"  # never listed as a checkpoint
        trainer.save_checkpoint(temp)  # every rank takes part; the strategy lets rank 0 write
        if trainer.is_global_zero:
            _durable_rename(temp, final)
            atomic_write_text(folder / LATEST, final.name + "\n")
            for old in list_checkpoints(folder)[: -session.settings.keep_checkpoints]:
                old.unlink(missing_ok=True)
        return final


class LightningJob:
    """A Lightning fit the faces can run (`Trainable`): each attempt a fresh Trainer, resumed by `ckpt_path`.

    :param model: the LightningModule (its weights are restored from the checkpoint on a resume).
    :param make_trainer: builds the Trainer with the callbacks it is given (`Trainer(callbacks=...)`).
    :param train_dataloaders: the training data (wrap a DataLoader in `ResumableLoader` for exact
        mid-epoch resumes), or None with a `datamodule`.
    :param datamodule: a LightningDataModule instead of `train_dataloaders`.
    :param total_steps: training batches of the whole fit, for the deadline guard (default: Lightning's
        estimate, known once the fit starts).
    """

    def __init__(
        self,
        model: pl.LightningModule,
        make_trainer: TrainerFactory,
        *,
        train_dataloaders: Any = None,
        datamodule: pl.LightningDataModule | None = None,
        total_steps: int | None = None,
    ) -> None:
        if (train_dataloaders is None) == (datamodule is None):
            raise InvalidInputError("give exactly one of train_dataloaders and datamodule")
        if total_steps is not None and total_steps < 1:
            raise InvalidInputError(f"total_steps={total_steps} must be at least 1 (or None)")
        self.model = model
        self.make_trainer = make_trainer
        self.train_dataloaders = train_dataloaders
        self.datamodule = datamodule
        self._total_steps = total_steps

    def total_steps(self) -> int | None:
        return self._total_steps

    def train(self, session: CarbonSession, resume_from: str | Path | None) -> TrainingResult:
        """One attempt: None trains afresh, "latest" resumes the newest checkpoint of the session's folder."""
        checkpoint = _checkpoint_to_resume(session.checkpoint_dir, resume_from)
        callback = CarbonAwareCallback(session, fresh=resume_from is None, checkpoint=checkpoint)
        try:
            trainer = self.make_trainer([callback])
            if not any(c is callback for c in getattr(trainer, "callbacks", [])):
                raise InvalidInputError(
                    "make_trainer must pass the callbacks it is given on: Trainer(callbacks=callbacks, ...)"
                )
            trainer.fit(
                self.model,
                train_dataloaders=self.train_dataloaders,
                datamodule=self.datamodule,
                ckpt_path=None if checkpoint is None else str(checkpoint),
            )
            return callback.conclude(trainer)
        finally:
            session.close()


class ResumableLoader:
    """A map-style DataLoader Lightning can resume mid-epoch: `state_dict` holds the epoch's starting RNG and
    the batches handed out; after `load_state_dict` the next epoch replays that shuffle and skips them.

    :param loader: the DataLoader (its sampler/batch sampler are shown to Lightning for `set_epoch`).
    """

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader
        self._epoch_rng: dict[str, Any] | None = None
        self._handed_out = 0
        self._pending: Mapping[str, Any] | None = None

    @property
    def sampler(self) -> Any:
        return self.loader.sampler

    @property
    def batch_sampler(self) -> Any:
        return self.loader.batch_sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        gens = _loader_generators(self.loader)
        pending, self._pending = self._pending, None
        skip = 0 if pending is None else int(pending["handed_out"])
        if pending is not None and pending["epoch_rng"] is not None and 0 < skip < len(self.loader):
            resumed = capture_rng([])  # the global RNGs the callback restored
            restore_rng(pending["epoch_rng"], gens)  # the epoch's start: the same shuffle draws
            self._epoch_rng, iterator = pending["epoch_rng"], iter(self.loader)
            for done in range(skip):
                if next(iterator, None) is None:
                    raise CheckpointError(
                        f"the data loader ended after {done} batches; the checkpoint is at batch {skip}: "
                        "resume with the same data"
                    )
            restore_rng(resumed, [])  # the loader's own generators stay where the replay left them
        else:
            skip, self._epoch_rng = 0, capture_rng(gens)
            iterator = iter(self.loader)
        self._handed_out = skip
        for batch in iterator:
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_rng": self._epoch_rng, "handed_out": self._handed_out}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = {"epoch_rng", "handed_out"} - set(state_dict)
        if missing:
            raise CheckpointError(f"not a ResumableLoader state: {sorted(missing)} missing")
        self._pending = state_dict


def _train_loaders(trainer: pl.Trainer) -> list[Any]:
    """The fit's training loaders (one, or the values of a list/dict of them)."""
    loaders = trainer.train_dataloader
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    return list(loaders) if isinstance(loaders, list | tuple) else [loaders]


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The generators a loader's shuffle draws from besides the global one (its own, its sampler's)."""
    inner = loader.loader if isinstance(loader, ResumableLoader) else loader
    candidates = (
        getattr(inner, "generator", None),
        getattr(getattr(inner, "sampler", None), "generator", None),
    )
    found: list[torch.Generator] = []
    for gen in candidates:
        if isinstance(gen, torch.Generator) and not any(gen is known for known in found):
            found.append(gen)
    return found


def _checkpoint_to_resume(folder: Path, resume_from: str | Path | None) -> Path | None:
    if resume_from is None:
        return None
    if isinstance(resume_from, str) and resume_from == LATEST_CHECKPOINT:
        if not folder.is_dir() or not list_checkpoints(folder):
            log.info("no checkpoint in %s: training starts at step 0", folder)
            return None
        return find_checkpoint(folder)
    return find_checkpoint(resume_from)


def _durable_rename(temp: Path, final: Path) -> None:
    with temp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(temp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _loss_of(outputs: Any) -> Any:
    """The loss of `training_step`'s output (a tensor, or a mapping with "loss"), detached; None if absent.

    Automatic optimization hands the callback a loss Lightning already detached: it is kept as it is."""
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if not isinstance(loss, torch.Tensor):
        return None
    return loss.detach() if loss.requires_grad else loss


def _fit_done(trainer: pl.Trainer, last_of_epoch: bool) -> bool:
    """Whether this batch was the fit's last (then it completes rather than pauses)."""
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return True
    max_epochs = trainer.max_epochs
    return (
        last_of_epoch
        and max_epochs is not None
        and max_epochs != -1
        and trainer.current_epoch + 1 >= max_epochs
    )


def _total_batches(trainer: pl.Trainer) -> int | None:
    steps = trainer.estimated_stepping_batches
    if steps == float("inf"):
        return None
    return int(steps) * trainer.accumulate_grad_batches
