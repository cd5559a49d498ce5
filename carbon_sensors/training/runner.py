"""The carbon-aware PyTorch training loop for a `TrainingJob`: a user of `CarbonSession`.

The session (`carbon_sensors.training.session`) decides, measures energy, keeps the timeline and the
checkpoint cadence; this runner adds what only a loop that owns the model knows: zero_grad / backward /
step (through a grad scaler), the scheduler, and the loader's position. Its checkpoints hold everything a
bitwise-identical continuation needs: model, optimizer, scheduler, grad scaler, every RNG, the epoch's
starting RNG (so the loader's shuffle can be replayed) and the position in the epoch.

`run(resume_from="latest")` continues from the newest loadable checkpoint of `checkpoint_dir`; a pause
returns "paused until" instead of blocking a worker; SIGTERM stops at the next step with a checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from carbon_sensors.deadline import DeadlineGuard, WorkEstimate
from carbon_sensors.emissions import EmissionsLedger
from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.training.checkpoint import capture_rng, restore_rng
from carbon_sensors.training.job import TrainingJob, TrainingResult
from carbon_sensors.training.ranks import RankSync
from carbon_sensors.training.session import (
    DEFAULT_CHECKPOINT_EVERY,
    LATEST_CHECKPOINT,
    TIMELINE_NAME,
    CarbonSession,
    session_settings,
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CHECKPOINT_EVERY", "LATEST_CHECKPOINT", "TIMELINE_NAME", "TrainingRunner"]


class TrainingRunner:
    """Run a `TrainingJob` carbon-aware; one runner per attempt (a stopped runner stays stopped).

    :param job: the model, optimizer, data and loss.
    :param checkpoint_dir: the local folder of the job's checkpoints and emissions timeline.
    :param session: the session to train in (instead of `checkpoint_dir` and `settings`).
    :param sync: how the ranks of a distributed job agree (default: `default_sync()`, see the session).
    :param settings: `SessionSettings` by name (strategy, zone, deadline, checkpoint_every, ...).
    """

    def __init__(
        self,
        job: TrainingJob,
        *,
        checkpoint_dir: str | Path | None = None,
        session: CarbonSession | None = None,
        sync: RankSync | None = None,
        **settings: Any,
    ) -> None:
        self.job = job
        if session is None:
            if checkpoint_dir is None:
                raise InvalidInputError("give checkpoint_dir (and settings) or a CarbonSession")
            session = CarbonSession(
                checkpoint_dir, session_settings(**settings), total_steps=job.total_steps(), sync=sync
            )
        elif checkpoint_dir is not None or settings or sync is not None:
            raise InvalidInputError("give checkpoint_dir and settings or a CarbonSession, not both")
        self.session = session
        self.checkpoint_dir = self.session.checkpoint_dir
        self.step_in_epoch = 0
        self._epoch_rng: dict[str, Any] | None = None

    # --- what the faces read -----------------------------------------------------------------------------
    @property
    def steps_done(self) -> int:
        return self.session.steps_done

    @property
    def epoch(self) -> int:
        return self.session.epoch

    @property
    def guard(self) -> DeadlineGuard:
        return self.session.guard

    @property
    def ledger(self) -> EmissionsLedger | None:
        return self.session.ledger

    @property
    def timeline_path(self) -> Path:
        return self.session.timeline_path

    def remaining_work(self) -> WorkEstimate:
        return self.session.remaining_work()

    def stop(self) -> None:
        """Ask `run()` to checkpoint and return "stopped" after the current step (thread-safe; for on_kill)."""
        self.session.stop()

    def run(self, resume_from: str | Path | None = None, *, wait_in_process: bool = False) -> TrainingResult:
        """Train until done, paused, or stopped.

        `resume_from`: None starts afresh (a new timeline); a checkpoint file or folder resumes from it;
        "latest" resumes from the newest loadable checkpoint in `checkpoint_dir`, or starts training
        afresh when there is none while keeping the timeline of attempts that died before one.
        """
        session = self.session
        try:
            state = session.resume(resume_from)
            if state is not None:
                self._restore(state)
            return self._loop(wait_in_process)
        finally:
            session.close()

    # --- the loop ------------------------------------------------------------------------------------------
    def _loop(self, wait_in_process: bool) -> TrainingResult:
        job, session = self.job, self.session
        job.model.train()
        per_epoch = job.steps_per_epoch()
        iterator: Iterator[Any] | None = None
        while session.epoch < job.epochs and (job.max_steps is None or session.steps_done < job.max_steps):
            if session.should_pause():
                if wait_in_process and session.wait():
                    continue
                return session.pause(self._state())
            if iterator is None:
                iterator = self._open_epoch()
            try:
                batch = next(iterator)
            except StopIteration:
                self._end_epoch()
                iterator = None
                continue
            session.step(self._train_step(batch))
            self.step_in_epoch += 1
            if per_epoch is not None and self.step_in_epoch >= per_epoch:
                self._end_epoch()  # eagerly, so a pause here never replays a whole epoch on resume
                iterator = None
            if session.checkpoint_due():
                session.save(self._state())
        return session.finish(self._state())

    def _train_step(self, batch: Any) -> torch.Tensor:
        job = self.job
        job.optimizer.zero_grad(set_to_none=True)
        loss = job.loss(batch)
        if job.grad_scaler is not None:
            job.grad_scaler.scale(loss).backward()
            job.grad_scaler.step(job.optimizer)
            job.grad_scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            job.optimizer.step()
        if job.scheduler is not None and job.scheduler_interval == "step":
            job.scheduler.step()
        return loss.detach()

    # --- epochs and the data-loader position ---------------------------------------------------------------
    def _generators(self) -> list[torch.Generator]:
        """The loader's own RNGs (DataLoader(generator=...), a sampler's generator), which shuffles draw from."""
        found: list[torch.Generator] = []
        for owner in (self.job.data_loader, getattr(self.job.data_loader, "sampler", None)):
            gen = getattr(owner, "generator", None)
            if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
                found.append(gen)
        return found

    def _open_epoch(self) -> Iterator[Any]:
        loader, gens = self.job.data_loader, self._generators()
        if self.step_in_epoch == 0:
            self._epoch_rng = capture_rng(gens)
            self._set_sampler_epoch()
            return iter(loader)
        # Resuming mid-epoch: replay the epoch's start so the loader draws the same order, skip what was done,
        # then put back the RNG state of the moment the checkpoint was taken.
        if self._epoch_rng is None:
            raise CheckpointError("the checkpoint is mid-epoch but has no epoch-start RNG state")
        now_rng = capture_rng(gens)
        restore_rng(self._epoch_rng, gens)
        self._set_sampler_epoch()
        iterator = iter(loader)
        for done in range(self.step_in_epoch):
            try:
                next(iterator)
            except StopIteration:
                raise CheckpointError(
                    f"the data loader ended after {done} batches but the checkpoint is at batch "
                    f"{self.step_in_epoch} of epoch {self.epoch}: resume with the same data"
                ) from None
        restore_rng(now_rng, gens)
        return iterator

    def _set_sampler_epoch(self) -> None:
        """Distributed samplers reshuffle per epoch only when told the epoch."""
        set_epoch = getattr(getattr(self.job.data_loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)

    def _end_epoch(self) -> None:
        self.session.end_epoch()
        if self.job.scheduler is not None and self.job.scheduler_interval == "epoch":
            self.job.scheduler.step()
        self.step_in_epoch = 0

    # --- checkpoints ---------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """The loop's part of a checkpoint (the session adds its own)."""
        job = self.job
        return {
            "model": job.model.state_dict(),
            "optimizer": job.optimizer.state_dict(),
            "scheduler": None if job.scheduler is None else job.scheduler.state_dict(),
            "grad_scaler": None if job.grad_scaler is None else job.grad_scaler.state_dict(),
            "rng": self.session.gather_per_rank(capture_rng(self._generators())),  # ranks draw apart
            "epoch_rng": self._epoch_rng,
            "step_in_epoch": self.step_in_epoch,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        job = self.job
        job.model.load_state_dict(state["model"])
        job.optimizer.load_state_dict(state["optimizer"])
        for name, obj in (("scheduler", job.scheduler), ("grad_scaler", job.grad_scaler)):
            if (obj is None) != (state[name] is None):
                raise CheckpointError(f"the job and the checkpoint disagree on whether there is a {name}")
            if obj is not None:
                obj.load_state_dict(state[name])
        self.step_in_epoch = int(state["step_in_epoch"])
        self._epoch_rng = state["epoch_rng"]
        rng = state["rng"]  # a dict: a checkpoint from before RNGs were kept per rank, everyone's
        mine = rng if isinstance(rng, dict) else self.session.entry_for_this_rank(rng)
        restore_rng(mine, self._generators())
