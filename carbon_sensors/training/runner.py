"""The carbon-aware PyTorch training loop: steps, energy windows, cheap strategy checks, pause by checkpoint.

Between steps the runner asks a cached decision (refreshed at most every `decision_refresh_seconds` of the
runner's `clock`, which is grid time under replay, as are the measurement windows and step times), through the
deadline guard (`carbon_sensors.deadline`), which wins over any strategy. On a pause it checkpoints everything a bitwise-identical continuation needs (model, optimizer, scheduler, grad
scaler, every RNG, the epoch's starting RNG so the loader's shuffle can be replayed, the position in the
epoch, the emissions ledger) and returns "paused until" instead of blocking a worker.

Crash safety: besides pauses, it checkpoints every `checkpoint_every` of wall time (default 5 minutes)
and/or every `checkpoint_every_steps` steps, each handed to `on_checkpoint` (to publish it) as it is
written, so a killed worker loses at most one interval. `run(resume_from="latest")` continues from the
newest loadable checkpoint of `checkpoint_dir`. The emissions timeline there is append-only across
attempts and fsynced each measurement window: a crashed attempt's energy stays in the report. SIGTERM
(a worker shutting down, a cancelled flow run) stops at the next step boundary with a checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from carbon_sensors.deadline import DeadlineGuard, StepTimes, WorkEstimate, estimate_work
from carbon_sensors.decision import Action, Decision, Strategy
from carbon_sensors.emissions import EmissionsLedger, IntensityLookup, read_jsonl
from carbon_sensors.errors import CheckpointError, InvalidInputError, TraceError
from carbon_sensors.power.monitor import PowerMonitor
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.timeutil import require_utc, utcnow
from carbon_sensors.training.checkpoint import (
    capture_rng,
    load_checkpoint,
    load_newest,
    restore_rng,
    save_checkpoint,
)
from carbon_sensors.training.job import TrainingJob, TrainingResult

log = logging.getLogger(__name__)

TIMELINE_NAME = "emissions.jsonl"
LATEST_CHECKPOINT = "latest"
# A crash loses at most this much training (wall time); a checkpoint of a small model takes milliseconds.
DEFAULT_CHECKPOINT_EVERY = timedelta(minutes=5)
CheckpointHook = Callable[[Path, Path], None]
"""Called with (checkpoint file, emissions timeline) after each checkpoint is written."""


class TrainingRunner:
    """Run a `TrainingJob` carbon-aware; one runner per attempt (a stopped runner stays stopped)."""

    def __init__(
        self,
        job: TrainingJob,
        *,
        checkpoint_dir: str | Path,
        strategy: Strategy | None = None,
        zone: str | None = None,
        intensity_source: IntensitySource | None = None,
        deadline: datetime | None = None,
        clock: Callable[[], pd.Timestamp] | None = None,
        checkpoint_every_steps: int | None = None,
        checkpoint_every: timedelta | None = DEFAULT_CHECKPOINT_EVERY,
        on_checkpoint: CheckpointHook | None = None,
        stop_on_sigterm: bool = True,
        decision_refresh_seconds: float = 30.0,
        pue: float = 1.0,
        monitor: PowerMonitor | None = None,
        estimated_step_seconds: float | None = None,
        measure_every_seconds: float = 10.0,
        wait_poll_seconds: float = 1.0,
        keep_checkpoints: int = 2,
        expected_duration: timedelta | None = None,
        resume_overhead: timedelta = timedelta(0),
    ) -> None:
        for name, value in (("decision_refresh_seconds", decision_refresh_seconds),
                            ("measure_every_seconds", measure_every_seconds)):  # fmt: skip
            if value < 0:
                raise InvalidInputError(f"{name}={value} must be zero or a positive number of seconds")
        if checkpoint_every_steps is not None and checkpoint_every_steps < 1:
            raise InvalidInputError(
                f"checkpoint_every_steps={checkpoint_every_steps} must be at least 1 (or None)"
            )
        if checkpoint_every is not None and checkpoint_every <= timedelta(0):
            raise InvalidInputError(
                f"checkpoint_every={checkpoint_every} must be longer than zero (or None: no timed checkpoints)"
            )
        if expected_duration is not None and expected_duration <= timedelta(0):
            raise InvalidInputError(
                f"expected_duration={expected_duration} must be longer than zero (or None)"
            )
        if not wait_poll_seconds > 0 or keep_checkpoints < 1:
            raise InvalidInputError(
                f"wait_poll_seconds={wait_poll_seconds} must be positive and keep_checkpoints={keep_checkpoints} >= 1"
            )
        self.job = job
        self.checkpoint_dir = Path(checkpoint_dir)
        self.strategy = strategy
        self.zone = zone
        self.deadline = None if deadline is None else require_utc(deadline, "deadline")
        self.expected_duration = expected_duration
        self.guard = DeadlineGuard(self.deadline, resume_overhead=resume_overhead)
        self.clock: Callable[[], pd.Timestamp] = clock if clock is not None else utcnow
        self.checkpoint_every_steps = checkpoint_every_steps
        self.checkpoint_every = checkpoint_every
        self.on_checkpoint = on_checkpoint
        self.stop_on_sigterm = stop_on_sigterm
        self._last_checkpoint_mono = time.monotonic()
        self.decision_refresh_seconds = decision_refresh_seconds
        self.pue = pue
        self.measure_every_seconds = measure_every_seconds
        self.wait_poll_seconds = wait_poll_seconds
        self.keep_checkpoints = keep_checkpoints
        self._monitor = monitor
        self._lookup = IntensityLookup(intensity_source, zone)
        self._stop = threading.Event()
        # progress
        self.epoch = 0
        self.step_in_epoch = 0
        self.steps_done = 0
        self.step_times = StepTimes(prior=estimated_step_seconds)  # clock (grid) seconds, measured as we go
        self.worked = timedelta(0)  # clock time spent in steps, across resumes
        self.epochs: list[dict[str, Any]] = []
        self._epoch_rng: dict[str, Any] | None = None
        self._last_loss: torch.Tensor | None = None
        self._decision: Decision | None = None
        self.ledger: EmissionsLedger | None = None
        # the open energy window
        self._key = f"runner-{id(self)}"
        self._window_clock = pd.Timestamp(0, tz="UTC")
        self._window_mono = 0.0
        self._window_steps = 0
        self._epoch_energy = {
            "joules": 0.0,
            "seconds": 0.0,
        }  # summed over the epoch's windows, across resumes

    # --- public --------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask `run()` to checkpoint and return "stopped" after the current step (thread-safe; for on_kill)."""
        self._stop.set()

    @property
    def timeline_path(self) -> Path:
        return self.checkpoint_dir / TIMELINE_NAME

    def run(self, resume_from: str | Path | None = None, *, wait_in_process: bool = False) -> TrainingResult:
        """Train until done, paused, or stopped.

        `resume_from`: None starts afresh (a new timeline); a checkpoint file or folder resumes from it;
        "latest" resumes from the newest loadable checkpoint in `checkpoint_dir`, or starts training
        afresh when there is none while keeping the timeline of attempts that died before one.
        """
        monitor = self._monitor if self._monitor is not None else PowerMonitor()
        try:
            with self._stopping_on_sigterm():
                self._begin(resume_from)
                return self._loop(monitor, wait_in_process)
        finally:
            if self._monitor is None:
                monitor.close()

    def _begin(self, resume_from: str | Path | None) -> None:
        if isinstance(resume_from, str) and resume_from == LATEST_CHECKPOINT:
            found = load_newest(self.checkpoint_dir)
            if found is None:
                log.info("no checkpoint in %s: training starts at step 0", self.checkpoint_dir)
                self._start_ledger(keep_timeline=True)
            else:
                self._restore(*found)
        elif resume_from is not None:
            self._restore(*load_checkpoint(resume_from))
        else:
            self._start_ledger(keep_timeline=False)
        assert self.ledger is not None
        self.ledger.begin_attempt(self.clock(), self.steps_done)
        self._last_checkpoint_mono = time.monotonic()

    @contextlib.contextmanager
    def _stopping_on_sigterm(self) -> Iterator[None]:
        """SIGTERM stops at the next step with a checkpoint; then it goes on to the handler it replaced.

        Airflow's handler calls `on_kill`, Prefect's raises the cancellation, the default ends the process:
        each now after the checkpoint. Signals can be handled only in the main thread.
        """
        if not self.stop_on_sigterm or threading.current_thread() is not threading.main_thread():
            yield
            return
        received: list[int] = []

        def on_sigterm(signum: int, frame: Any) -> None:
            received.append(signum)
            self._stop.set()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
            if received:
                log.info("SIGTERM: stopped at step %d with a checkpoint", self.steps_done)
                if callable(previous):
                    previous(signal.SIGTERM, None)
                elif previous == signal.SIG_DFL:
                    os.kill(os.getpid(), signal.SIGTERM)

    # --- the loop ------------------------------------------------------------------------------------------
    def _loop(self, monitor: PowerMonitor, wait_in_process: bool) -> TrainingResult:
        job = self.job
        job.model.train()
        per_epoch = job.steps_per_epoch()
        self._open_window(monitor)
        now = self.clock()  # read once per step: the end of one step is the start of the next
        # The first decision waits for a timed step (or a prior), so the guard never decides on nothing.
        next_decision: pd.Timestamp | None = now if self.step_times.known else None
        iterator: Iterator[Any] | None = None
        while self.epoch < job.epochs and (job.max_steps is None or self.steps_done < job.max_steps):
            if self._stop.is_set():
                return self._finish(monitor, "stopped", None)
            if next_decision is not None and now >= next_decision:
                decision = self._decide(now)
                next_decision = now + timedelta(seconds=self.decision_refresh_seconds)
                if decision.action is not Action.RUN:
                    assert decision.until is not None
                    if not wait_in_process:
                        return self._finish(monitor, "paused", decision)
                    if not self._wait(monitor, decision):
                        return self._finish(monitor, "stopped", None)
                    self.step_times.restart()
                    now = next_decision = self.clock()
                    continue
                now = self.clock()  # a slow decision (a provider's retries) is not step time
            if iterator is None:
                iterator = self._open_epoch(monitor)
            try:
                batch = next(iterator)
            except StopIteration:
                self._end_epoch(monitor)
                iterator = None
                continue
            self._train_step(batch)
            end = self.clock()
            self.step_times.add((end - now).total_seconds())
            self.worked += end - now
            now = end
            self.steps_done += 1
            self.step_in_epoch += 1
            self._window_steps += 1
            if next_decision is None and self.step_times.known:
                next_decision = now
            if per_epoch is not None and self.step_in_epoch >= per_epoch:
                self._end_epoch(monitor)  # eagerly, so a pause here never replays a whole epoch on resume
                iterator = None
            elif self._window_due(now):
                self._close_window(monitor)
                self._open_window(monitor)
            if self._checkpoint_due():
                self._close_window(monitor)  # so the checkpoint's ledger holds all energy up to this step
                self._open_window(monitor)
                self._checkpoint()
        return self._finish(monitor, "completed", None)

    def _train_step(self, batch: Any) -> None:
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
        self._last_loss = loss.detach()

    # --- epochs and the data-loader position ---------------------------------------------------------------
    def _generators(self) -> list[torch.Generator]:
        """The loader's own RNGs (DataLoader(generator=...), a sampler's generator), which shuffles draw from."""
        found: list[torch.Generator] = []
        for owner in (self.job.data_loader, getattr(self.job.data_loader, "sampler", None)):
            gen = getattr(owner, "generator", None)
            if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
                found.append(gen)
        return found

    def _open_epoch(self, monitor: PowerMonitor) -> Iterator[Any]:
        loader, gens = self.job.data_loader, self._generators()
        if self.step_in_epoch == 0:
            self._epoch_rng = capture_rng(gens)
            self._set_sampler_epoch()
            self._epoch_energy = {"joules": 0.0, "seconds": 0.0}
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

    def _end_epoch(self, monitor: PowerMonitor) -> None:
        self._close_window(monitor, label=f"epoch {self.epoch}")
        self.epochs.append(
            {
                "epoch": self.epoch,
                "steps": self.step_in_epoch,
                **self._epoch_energy,
                "loss": self._loss_value(),
            }
        )
        if self.job.scheduler is not None and self.job.scheduler_interval == "epoch":
            self.job.scheduler.step()
        self.epoch += 1
        self.step_in_epoch = 0
        self._open_window(monitor)

    # --- energy windows ------------------------------------------------------------------------------------
    def _open_window(self, monitor: PowerMonitor) -> None:
        monitor.begin_window(f"{self._key}:interval")
        self._window_clock = self.clock()
        self._window_mono = time.monotonic()
        self._window_steps = 0

    def _window_due(self, now: pd.Timestamp) -> bool:
        """`measure_every_seconds` of clock (grid) time have passed, and at least a second of wall time (or
        `measure_every_seconds` if shorter), since energy counters update only about every 100 ms."""
        grid = (now - self._window_clock).total_seconds()
        wall = time.monotonic() - self._window_mono
        return grid >= self.measure_every_seconds and wall >= min(self.measure_every_seconds, 1.0)

    def _close_window(self, monitor: PowerMonitor, label: str | None = None) -> None:
        assert self.ledger is not None
        measured = monitor.end_window(f"{self._key}:interval")
        end = self.clock()
        self.ledger.add_energy(self._window_clock, end, measured.joules, measured.sources, label=label)
        self._epoch_energy["joules"] += measured.total_joules
        self._epoch_energy["seconds"] += measured.seconds

    def _loss_value(self) -> float | None:
        return None if self._last_loss is None else float(self._last_loss.float().item())

    # --- decisions -----------------------------------------------------------------------------------------
    def remaining_work(self) -> WorkEstimate:
        """The work left, from measured step times, else `expected_duration`, else unknown (see the guard)."""
        total = self.job.total_steps()
        return estimate_work(
            steps_left=None if total is None else total - self.steps_done,
            step_times=self.step_times,
            expected_duration=self.expected_duration,
            worked=self.worked,
        )

    def _decide(self, now: pd.Timestamp) -> Decision:
        assert self.ledger is not None
        decision = self.guard.ask(self.strategy, now, self.remaining_work())
        if decision.fallback and (self._decision is None or self._decision.reason != decision.reason):
            self.ledger.note(f"strategy fallback: {decision.reason}")
        self._decision = decision
        return decision

    def _wait(self, monitor: PowerMonitor, decision: Decision) -> bool:
        """Sleep in-process until `decision.until`; False when stopped meanwhile."""
        assert self.ledger is not None and decision.until is not None
        self._close_window(monitor)
        self.ledger.begin_pause(self.clock(), decision.until, decision.reason)
        log.info("pausing in-process until %s: %s", decision.until.isoformat(), decision.reason)
        while (left := (decision.until - self.clock()).total_seconds()) > 0:
            if self._stop.wait(min(self.wait_poll_seconds, left)):
                break
        self.ledger.end_pause(self.clock())
        self._open_window(monitor)
        return not self._stop.is_set()

    # --- checkpoints ---------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        assert self.ledger is not None
        job = self.job
        return {
            "format": 1,
            "model": job.model.state_dict(),
            "optimizer": job.optimizer.state_dict(),
            "scheduler": None if job.scheduler is None else job.scheduler.state_dict(),
            "grad_scaler": None if job.grad_scaler is None else job.grad_scaler.state_dict(),
            "rng": capture_rng(self._generators()),
            "epoch_rng": self._epoch_rng,
            "progress": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "steps_done": self.steps_done,
                         "step_times": self.step_times.to_list(), "worked_seconds": self.worked.total_seconds(),
                         "epoch_energy": dict(self._epoch_energy)},
            "deadline_guard": self.guard.to_state(),
            "epochs": list(self.epochs),
            "ledger": self.ledger.to_records(),
        }  # fmt: skip

    def _checkpoint_due(self) -> bool:
        by_steps = (
            bool(self.checkpoint_every_steps) and self.steps_done % (self.checkpoint_every_steps or 1) == 0
        )
        elapsed = time.monotonic() - self._last_checkpoint_mono
        by_time = self.checkpoint_every is not None and elapsed >= self.checkpoint_every.total_seconds()
        return by_steps or by_time

    def _checkpoint(self) -> Path:
        path = save_checkpoint(
            self.checkpoint_dir, self._state(), step=self.steps_done, keep_last=self.keep_checkpoints
        )
        self._last_checkpoint_mono = time.monotonic()
        if self.on_checkpoint is not None:
            self.on_checkpoint(path, self.timeline_path)
        return path

    # --- the emissions timeline ----------------------------------------------------------------------------
    def _start_ledger(self, *, keep_timeline: bool) -> None:
        """A new ledger and timeline, or (`keep_timeline`) the timeline of earlier attempts, continued."""
        kept = self._read_timeline() if keep_timeline else None
        if kept is not None:
            self.ledger = kept
            return
        self.ledger = EmissionsLedger(
            zone=self.zone, submitted_at=self.clock(), pue=self.pue, lookup=self._lookup,
            jsonl_path=self.timeline_path,
        )  # fmt: skip
        self.ledger.write_jsonl()

    def _read_timeline(self) -> EmissionsLedger | None:
        """The timeline written so far, to append to; an unreadable one is moved aside (never overwritten)."""
        path = self.timeline_path
        if not path.is_file():
            return None
        try:
            ledger = read_jsonl(path)
        except TraceError as exc:
            aside = path.with_name(f"{path.name}.unreadable-{time.time_ns()}")
            log.warning("emissions timeline %s cannot be read (%s); moved to %s", path, exc, aside.name)
            path.rename(aside)
            return None
        if ledger.pue != self.pue:
            raise InvalidInputError(
                f"pue={self.pue} differs from pue={ledger.pue} of the timeline {path}; resume with the same PUE"
            )
        ledger.lookup, ledger.jsonl_path = self._lookup, path
        return ledger

    def _resume_ledger(self, from_checkpoint: EmissionsLedger, step: int) -> EmissionsLedger:
        """The timeline (every attempt's energy) merged with the checkpoint's ledger, nothing counted twice."""
        ledger = self._read_timeline()
        if ledger is None:
            from_checkpoint.jsonl_path = self.timeline_path
            from_checkpoint.write_jsonl()
            return from_checkpoint
        ledger.absorb(from_checkpoint)
        saved_until = max((i.end for i in from_checkpoint.intervals), default=from_checkpoint.submitted_at)
        lost = sum(1 for i in ledger.intervals if i.start >= saved_until)
        if lost:
            ledger.note(
                f"{lost} interval(s) measured after the last checkpoint (step {step}) were re-run after a "
                "crash; their energy is kept"
            )
        return ledger

    def _restore(self, file: Path, state: dict[str, Any]) -> None:
        job = self.job
        job.model.load_state_dict(state["model"])
        job.optimizer.load_state_dict(state["optimizer"])
        for name, obj in (("scheduler", job.scheduler), ("grad_scaler", job.grad_scaler)):
            if (obj is None) != (state[name] is None):
                raise CheckpointError(
                    f"{file}: the job and the checkpoint disagree on whether there is a {name}"
                )
            if obj is not None:
                obj.load_state_dict(state[name])
        progress = state["progress"]
        self.epoch, self.step_in_epoch = int(progress["epoch"]), int(progress["step_in_epoch"])
        self.steps_done = int(progress["steps_done"])
        if progress.get("step_times"):
            self.step_times = StepTimes(progress["step_times"])
        elif progress.get("step_seconds") is not None:  # a checkpoint from before per-step times
            self.step_times = StepTimes(prior=float(progress["step_seconds"]))
        self.worked = timedelta(seconds=float(progress.get("worked_seconds", 0.0)))
        self.guard.restore(state.get("deadline_guard"))
        self.epochs = list(state["epochs"])
        self._epoch_energy = {k: float(v) for k, v in progress["epoch_energy"].items()}
        self._epoch_rng = state["epoch_rng"]
        restore_rng(state["rng"], self._generators())
        saved = EmissionsLedger.from_records(state["ledger"], lookup=self._lookup)
        if saved.pue != self.pue:
            raise InvalidInputError(
                f"pue={self.pue} differs from the checkpoint's pue={saved.pue}; resume with the same PUE"
            )
        ledger = self._resume_ledger(saved, self.steps_done)
        ledger.end_pause(self.clock())
        self.ledger = ledger
        log.info("resumed from %s at epoch %d, step %d", file, self.epoch, self.steps_done)

    def _finish(self, monitor: PowerMonitor, status: str, decision: Decision | None) -> TrainingResult:
        assert self.ledger is not None
        self._close_window(monitor)
        if status == "paused" and decision is not None:
            self.ledger.begin_pause(self.clock(), decision.until, decision.reason)
        self.ledger.end_attempt(status)
        path = self._checkpoint()
        return TrainingResult(
            status=status,
            paused_until=decision.until if decision is not None else None,
            checkpoint_path=str(path),
            steps_done=self.steps_done,
            epoch=self.epoch,
            report=self.ledger.report(),
            decision=decision if decision is not None else self._decision,
            timeline_path=str(self.timeline_path),
            last_loss=self._loss_value(),
            epochs=list(self.epochs),
            power_notes=monitor.notes(),
            started_at_step=self.ledger.attempts[-1].from_step,
        )
