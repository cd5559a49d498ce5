"""Carbon-aware Hugging Face `transformers.Trainer`: a callback that drives a `CarbonSession`, and a job the
faces run.

`CarbonAwareTrainerCallback` counts each optimizer step (`session.step()`, energy windows, epochs) and asks
the session at step boundaries; on a pause it sets `control.should_save` and `control.should_training_stop`,
so the Trainer writes its own checkpoint folder (`output_dir/checkpoint-N`: weights, optimizer, scheduler,
scaler, RNG states, `trainer_state.json`) and stops cleanly. The folder's files are packed, as uint8 tensors,
into the session's checkpoint file (`checkpoint-<step>.pt` with `LATEST`, next to the session's state), so a
face can publish and mirror one file like any other; `HFTrainerJob` unpacks it into a folder again and
resumes with `trainer.train(resume_from_checkpoint=...)`, a fresh Trainer per attempt.

    def make_trainer(callbacks: list[TrainerCallback], output_dir: str) -> Trainer:
        args = TrainingArguments(output_dir=output_dir, num_train_epochs=3, save_strategy="no", report_to="none")
        return Trainer(model=build_model(), args=args, train_dataset=data, callbacks=callbacks)

    result = HFTrainerJob(make_trainer).train(CarbonSession("ckpt", SessionSettings(strategy=...)), "latest")

What resumes exactly (read from transformers 5.x's `Trainer._run_epoch`): the Trainer restores weights,
optimizer, scheduler and the global RNGs, and skips the batches already seen in the resumed epoch (the
accelerate sampler reshuffles from `args.seed` + epoch). Dropout and shuffling therefore continue bitwise,
mid-epoch too. Not exact mid-epoch: a dataset that draws from the global RNG in `__getitem__` (random
augmentation): the Trainer fetches the first resumed batch before it restores the RNG state. At epoch
boundaries that case is exact as well. The loss in the report is the latest one the Trainer logged
(`logging_steps`), since callbacks see the loss only in `on_log`.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "carbon_sensors.integrations.transformers needs Hugging Face transformers and accelerate: "
        "pip install 'carbon-aware-trainer[transformers]'"
    ) from exc

import torch

from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.paths import confine
from carbon_sensors.training.job import TrainingResult
from carbon_sensors.training.session import CarbonSession

log = logging.getLogger(__name__)

TrainerFactory = Callable[[list[TrainerCallback], str], Trainer]
"""Builds the attempt's Trainer from the callbacks to pass it (ours included) and the output_dir to use."""
HF_OUTPUT = "hf-trainer"
"""The Trainer's output_dir inside the session's folder (its checkpoint folders are scratch: the .pt rules)."""
HF_STATE = "hf_checkpoint"
_PREFIX = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR


def pack_folder(folder: Path) -> dict[str, Any]:
    """A Trainer checkpoint folder as plain data: relative file name -> bytes as a uint8 tensor."""
    files: dict[str, torch.Tensor] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = bytearray(path.read_bytes())
        tensor = torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
        files[path.relative_to(folder).as_posix()] = tensor
    return {"name": folder.name, "files": files}


def unpack_folder(packed: dict[str, Any], output_dir: Path) -> Path:
    """Write a `pack_folder` result back as `output_dir/<name>` (replacing one there); names stay inside it."""
    name = str(packed["name"])
    if not name.startswith(_PREFIX) or "/" in name or name in (".", ".."):
        raise CheckpointError(f"packed Trainer checkpoint name {name!r} must look like {_PREFIX}<step>")
    folder = output_dir / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for rel, data in packed["files"].items():
        target = Path(confine(folder / rel, folder, "a packed Trainer checkpoint file"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.numpy().tobytes())
    return folder


class CarbonAwareTrainerCallback(TrainerCallback):  # type: ignore[misc]
    """Drives a begun `CarbonSession` from a Trainer's steps; pauses by checkpoint and stop.

    :param session: the attempt's session, begun (`HFTrainerJob.train` begins it from the checkpoint).
    """

    def __init__(self, session: CarbonSession) -> None:
        self.session = session
        self.stopping = False  # paused or stopped: the next save is the attempt's last checkpoint
        self.final = False  # the last step: likewise, kept for session.finish()
        self.pending: dict[str, Any] | None = None
        self.loss: float | None = None

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        session = self.session
        session.step(self.loss)
        self._sync_epochs(state)
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            self.final = True  # done: no pause can save anything
            control.should_save = True
        elif session.should_pause():
            self.stopping = True
            control.should_save = True
            control.should_training_stop = True
        elif session.checkpoint_due():
            control.should_save = True
        return control

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        self._sync_epochs(state)
        return control

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        """The Trainer wrote `checkpoint-<global step>`: pack it into the session's checkpoint file."""
        folder = Path(str(args.output_dir)) / f"{_PREFIX}{state.global_step}"
        user: dict[str, Any] = {}
        if self.session.sync.is_writer:  # the Trainer writes its folder on the main process only
            if not folder.is_dir():
                raise CheckpointError(f"the Trainer reported a save but {folder} is not a folder")
            user[HF_STATE] = pack_folder(folder)
            shutil.rmtree(folder, ignore_errors=True)  # the packed copy in the .pt is the checkpoint now
        if self.stopping or self.final:
            self.pending = user  # written by pause()/finish(), so it holds the whole attempt's ledger
        else:
            self.session.save(user)
        return control

    def _sync_epochs(self, state: TrainerState) -> None:
        """End each epoch the Trainer completed (eagerly at its last step, so a pause there resumes after it)."""
        done = math.floor((state.epoch or 0.0) + 1e-9)
        while self.session.epoch < done:
            self.session.end_epoch()


class HFTrainerJob:
    """A Hugging Face Trainer job the faces can run (`Trainable`): a fresh Trainer per attempt.

    :param make_trainer: builds the Trainer from the callbacks to pass it and the output_dir to use.
    :param total_steps: the job's optimizer steps, when known; else read from a Trainer built once
        (`args.max_steps`, or epochs x the train loader's update steps).
    """

    def __init__(self, make_trainer: TrainerFactory, *, total_steps: int | None = None) -> None:
        self.make_trainer = make_trainer
        self._total = total_steps
        self.trainer: Trainer | None = None  # the last attempt's

    def total_steps(self) -> int | None:
        if self._total is None:
            with tempfile.TemporaryDirectory(prefix="hf-steps-") as scratch:
                self._total = steps_of(self.make_trainer([], scratch))
        return self._total

    def train(self, session: CarbonSession, resume_from: str | Path | None) -> TrainingResult:
        """Resume (None: afresh; "latest"; a checkpoint file) and train one attempt until done or paused."""
        try:
            user = session.resume(resume_from)
            if user is not None and HF_STATE not in user:
                raise CheckpointError(
                    f"{resume_from} holds no Hugging Face Trainer checkpoint; resume from one HFTrainerJob wrote"
                )
            packed = None if user is None else user[HF_STATE]  # None: saved before the first step
            if session.should_pause():  # held before the first step (a resume into a still dirty grid)
                return session.pause({HF_STATE: None} if user is None else None)
            output_dir = session.checkpoint_dir / HF_OUTPUT
            folder = None if packed is None else unpack_folder(packed, output_dir)
            callback = CarbonAwareTrainerCallback(session)
            trainer = self.trainer = self.make_trainer([callback], str(output_dir))
            _check(trainer, callback)
            trainer.train(resume_from_checkpoint=None if folder is None else str(folder))
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            if callback.stopping:
                return session.pause(callback.pending)
            return session.finish(callback.pending)
        finally:
            session.close()


def steps_of(trainer: Trainer) -> int:
    """Optimizer steps of a whole `train()`: `max_steps`, else epochs x update steps per epoch."""
    args = trainer.args
    if args.max_steps > 0:
        return int(args.max_steps)
    batches = len(trainer.get_train_dataloader())
    per_epoch = max(1, math.ceil(batches / args.gradient_accumulation_steps))
    return int(per_epoch * math.ceil(args.num_train_epochs))


def _check(trainer: Trainer, callback: CarbonAwareTrainerCallback) -> None:
    if all(cb is not callback for cb in trainer.callback_handler.callbacks):
        raise InvalidInputError(
            "make_trainer must pass the callbacks it is given to Trainer(callbacks=...); the carbon-aware "
            "callback is missing from the Trainer it built"
        )
    if trainer.args.restore_callback_states_from_checkpoint:
        raise InvalidInputError(
            "restore_callback_states_from_checkpoint=True would restore the stop a pause set; use False"
        )
