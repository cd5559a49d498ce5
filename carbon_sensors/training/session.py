"""A carbon-aware training session: pause/resume, energy and emissions for any training loop.

The session owns everything that is not the model: the strategy behind the deadline guard (which wins over
any strategy), energy windows and the emissions ledger with its append-only timeline, step timing,
checkpoint cadence, SIGTERM. The model's state stays the loop's: the loop hands it to `save(state)` and
gets it back from `resume()`. A hand-written loop uses it directly (`carbon_session`); `TrainingRunner` and
the Lightning and Hugging Face callbacks are users of it, so every loop gets the same guarantees.

    with carbon_session("ckpt", zone="GB", strategy=ThresholdStrategy(source, "GB")) as carbon:
        state = carbon.resume()                      # None on a fresh start
        for step in range(carbon.steps_done, total):
            loss = train_one_step()
            carbon.step(loss)
            if carbon.checkpoint_due():
                carbon.save(my_state())
            if carbon.should_pause():
                return carbon.pause(my_state())      # "paused until" (or "stopped" on SIGTERM)
        return carbon.finish(my_state())

Under torch.distributed only the writer's state is saved: what differs per rank (RNG states, say) goes in as
`carbon.gather_per_rank(value)` and comes back with `carbon.entry_for_this_rank(saved)`.

Decisions are cached for `decision_refresh_seconds` of the session's `clock` (grid time under replay, as are
the windows and step times) and taken on the writer rank only; `RankSync.agree` hands them to every rank.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from carbon_sensors.deadline import DeadlineGuard, StepTimes, WorkEstimate, estimate_work
from carbon_sensors.decision import Action, Decision, Strategy
from carbon_sensors.emissions import EmissionsLedger, IntensityLookup, read_jsonl
from carbon_sensors.errors import CheckpointError, InvalidInputError, TraceError
from carbon_sensors.power.monitor import PowerMonitor
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.replay import GridClock
from carbon_sensors.timeutil import require_utc, utc_from_ns, utcnow
from carbon_sensors.training.checkpoint import (
    FORMAT,
    checkpoint_name,
    load_checkpoint,
    load_newest,
    save_checkpoint,
)
from carbon_sensors.training.distributed import default_sync
from carbon_sensors.training.job import TrainingResult
from carbon_sensors.training.ranks import LocalSync, RankSync

log = logging.getLogger(__name__)

TIMELINE_NAME = "emissions.jsonl"
LATEST_CHECKPOINT = "latest"
# A crash loses at most this much training (wall time); a checkpoint of a small model takes milliseconds.
DEFAULT_CHECKPOINT_EVERY = timedelta(minutes=5)
CheckpointHook = Callable[[Path, Path], None]
"""Called with (checkpoint file, emissions timeline) after each checkpoint is written."""
CheckpointWriter = Callable[[], Path]
"""Writes a framework's checkpoint of the current step (atomically, named `checkpoint_name(step)`)."""

# what the writer rank tells every rank after a step (RankSync.agree)
_HOLD, _STOP, _WINDOW, _CHECKPOINT = 1, 2, 4, 8


class SessionListener(Protocol):
    """Told of the session's begin, each finished epoch, and its end (MLflow tracking is one); writer only."""

    def session_began(self, session: CarbonSession) -> None: ...

    def epoch_ended(self, epoch: dict[str, Any]) -> None: ...

    def session_ended(self, result: TrainingResult) -> None: ...


@dataclass(frozen=True)
class SessionSettings:
    """How a session decides, measures and checkpoints; the same settings serve every training face.

    :param strategy: asked between steps (behind the deadline guard); None trains without pausing.
    :param zone: the grid zone the emissions are looked up in.
    :param intensity_source: where the ledger looks up intensities (None: energy only).
    :param deadline: finish-by time (aware); the guard resumes and never pauses again when the remaining
        work needs all the time left.
    :param expected_duration: the whole job's run time, for loops whose length is unknown.
    :param resume_overhead: time from "resume" to the first resumed step, kept before the deadline.
    :param clock: the time decisions and windows use (grid time under replay); default UTC now.
    :param clock_ns: the same clock in integer nanoseconds since the epoch, read at every step (a Timestamp
        costs tens of microseconds there, after a step has pushed pandas out of the CPU caches); default:
        `time.time_ns` without a `clock`, else `clock().value`. `GridClock.now_ns` goes with `GridClock.now`.
    :param checkpoint_every: wall time between periodic checkpoints (None: only at pauses and the end).
    :param checkpoint_every_steps: also checkpoint every this many steps.
    :param keep_checkpoints: checkpoints kept in the folder (a torn newest one falls back to the one before).
    :param on_checkpoint: called with (checkpoint, timeline) after each checkpoint, to publish them.
    :param stop_on_sigterm: SIGTERM stops at the next step with a checkpoint (main thread only).
    :param decision_refresh_seconds: clock seconds a decision is reused for.
    :param pue: the data centre's power usage effectiveness, in [1, 5].
    :param monitor: the power monitor (default: discovered NVML, RAPL or an estimate).
    :param estimated_step_seconds: a step time to decide on before the first step is measured.
    :param measure_every_seconds: clock seconds per energy window (each window is one ledger interval).
    :param wait_poll_seconds: how often an in-process wait checks for a stop.
    :param listeners: told of each epoch and of the end (e.g. `MlflowListener`).
    """

    strategy: Strategy | None = None
    zone: str | None = None
    intensity_source: IntensitySource | None = None
    deadline: datetime | None = None
    expected_duration: timedelta | None = None
    resume_overhead: timedelta = timedelta(0)
    clock: Callable[[], pd.Timestamp] | None = None
    clock_ns: Callable[[], int] | None = None
    checkpoint_every: timedelta | None = DEFAULT_CHECKPOINT_EVERY
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2
    on_checkpoint: CheckpointHook | None = None
    stop_on_sigterm: bool = True
    decision_refresh_seconds: float = 30.0
    pue: float = 1.0
    monitor: PowerMonitor | None = None
    estimated_step_seconds: float | None = None
    measure_every_seconds: float = 10.0
    wait_poll_seconds: float = 1.0
    listeners: Sequence[SessionListener] = field(default=())

    def __post_init__(self) -> None:
        for name in ("decision_refresh_seconds", "measure_every_seconds"):
            if getattr(self, name) < 0:
                raise InvalidInputError(
                    f"{name}={getattr(self, name)} must be zero or a positive number of seconds"
                )
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise InvalidInputError(
                f"checkpoint_every_steps={self.checkpoint_every_steps} must be at least 1 (or None)"
            )
        for name in ("checkpoint_every", "expected_duration"):
            span = getattr(self, name)
            if span is not None and span <= timedelta(0):
                raise InvalidInputError(f"{name}={span} must be longer than zero (or None)")
        if not self.wait_poll_seconds > 0 or self.keep_checkpoints < 1:
            raise InvalidInputError(
                f"wait_poll_seconds={self.wait_poll_seconds} must be positive and "
                f"keep_checkpoints={self.keep_checkpoints} >= 1"
            )
        if self.deadline is not None:
            require_utc(self.deadline, "deadline")


def session_settings(**settings: Any) -> SessionSettings:
    """`SessionSettings(**settings)`, with an unknown name an `InvalidInputError` that lists the valid ones."""
    valid = SessionSettings.__dataclass_fields__
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise InvalidInputError(f"unknown session setting(s) {unknown}; valid: {sorted(valid)}")
    return SessionSettings(**settings)


def settings_on_clock(
    clock: GridClock, *, expected_duration: timedelta | None = None, **settings: Any
) -> SessionSettings:
    """The settings of a face (the Airflow operator, the Prefect flow) on its clock: decisions in the clock's
    time, and `expected_duration`, the job's wall run time, turned into the clock's (grid time under replay,
    the time the guard measures work in), so both faces size an unsized job alike."""
    grid = None if expected_duration is None else clock.grid_duration(expected_duration)
    return session_settings(clock=clock.now, clock_ns=clock.now_ns, expected_duration=grid, **settings)


class CarbonSession:
    """One attempt of a training job, carbon-aware; begin it, call `step()` per step, end it once.

    :param checkpoint_dir: the job's local folder: checkpoints (`checkpoint-<step>.pt`) and the timeline.
    :param settings: how it decides, measures and checkpoints.
    :param total_steps: the job's length in steps, when known (the deadline guard needs the work left).
    :param sync: how the ranks of a distributed job agree (default: `default_sync()` when the session
        begins: the torch.distributed group if one is initialised, else one process).
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        settings: SessionSettings | None = None,
        *,
        total_steps: int | None = None,
        sync: RankSync | None = None,
    ) -> None:
        self.settings = s = settings if settings is not None else SessionSettings()
        self.checkpoint_dir = Path(checkpoint_dir)
        self.total_steps = total_steps
        self._sync = sync  # resolved in begin(): Lightning and HF start their process groups late
        self.deadline = None if s.deadline is None else require_utc(s.deadline, "deadline")
        self.guard = DeadlineGuard(self.deadline, resume_overhead=s.resume_overhead)
        self.clock: Callable[[], pd.Timestamp] = s.clock if s.clock is not None else utcnow
        self.clock_ns: Callable[[], int] = _clock_ns(s)
        self._lookup = IntensityLookup(s.intensity_source, s.zone)
        self._monitor = s.monitor  # or one of its own, from begin() to the end
        self._own_monitor = False
        self._stop = threading.Event()
        self._sigterm: _SigtermScope | None = None
        self.ledger: EmissionsLedger | None = None
        # progress, kept in every checkpoint
        self.steps_done = 0
        self.epoch = 0
        self.step_times = StepTimes(prior=s.estimated_step_seconds)  # clock (grid) seconds
        self._worked_ns = 0  # clock time spent in steps, across resumes
        self.epochs: list[dict[str, Any]] = []
        self._epoch_energy = {"joules": 0.0, "seconds": 0.0, "steps": 0}
        # this attempt
        self.decision: Decision | None = None
        self._hold: Decision | None = None
        self._flags = 0
        self._polled_at_step = -1
        # ns of the clock: the per-step path stays on ints (a step may be ~1 ms)
        self._next_decision: int | None = None
        self._quiet_until = 0  # steps before this need no poll (see _quiet); 0: poll at every step
        self._step_started = 0
        self._last_checkpoint_mono = time.monotonic()
        self._checkpoint: Path | None = None
        self._checkpoint_step = -1
        self._last_loss: Any = None
        self._ended: TrainingResult | None = None
        self._closed = False
        self._key = f"session-{id(self)}"
        self._window_clock = pd.Timestamp(0, tz="UTC")
        self._window_mono = 0.0
        self._window_open = False

    @property
    def sync(self) -> RankSync:
        """How the ranks agree: the one given, else `default_sync()` from begin() on."""
        if self._sync is None:
            raise InvalidInputError("the session has not begun: call resume() or begin() first")
        return self._sync

    @property
    def worked(self) -> timedelta:
        """Clock time spent in steps, across resumes (not pauses, not decisions)."""
        return timedelta(microseconds=self._worked_ns / 1000)

    @property
    def timeline_path(self) -> Path:
        return self.checkpoint_dir / TIMELINE_NAME

    @property
    def ended(self) -> bool:
        return self._ended is not None

    # --- beginning ---------------------------------------------------------------------------------------
    def resume(self, resume_from: str | Path | None = LATEST_CHECKPOINT) -> dict[str, Any] | None:
        """Begin the attempt from a checkpoint of `save()`; returns the loop's state, None on a fresh start.

        `resume_from`: "latest" (the newest loadable checkpoint of `checkpoint_dir`, keeping the timeline of
        attempts that died before one), a checkpoint file or folder, or None (afresh, a new timeline).
        """
        if resume_from is None:
            self.begin(None, fresh=True)
            return None
        if isinstance(resume_from, str) and resume_from == LATEST_CHECKPOINT:
            found = load_newest(self.checkpoint_dir)
        else:
            found = load_checkpoint(resume_from)
        if found is None:
            log.info("no checkpoint in %s: training starts at step 0", self.checkpoint_dir)
            self.begin(None, fresh=False)
            return None
        file, state = found
        if "carbon" not in state or "user" not in state:
            raise CheckpointError(f"{file} holds no session and loop state; resume from one save() wrote")
        self.begin(state["carbon"], fresh=False, source=file)
        user_state: dict[str, Any] = state["user"]
        return user_state

    def begin(
        self, carbon_state: dict[str, Any] | None, *, fresh: bool, source: str | Path | None = None
    ) -> None:
        """Begin the attempt: with the session state a checkpoint holds (`state_dict()`), or without one.

        For frameworks that write checkpoints of their own (Lightning, Hugging Face) and carry this state in
        them. Without a state, `fresh` starts a new timeline; otherwise earlier attempts' timeline is kept.
        """
        if self.ledger is not None:
            raise InvalidInputError("this session has begun already; use a new session per attempt")
        if self._sync is None:
            self._sync = default_sync()
        if carbon_state is None:
            self._start_ledger(keep_timeline=not fresh)
        else:
            self._restore(carbon_state, source)
        assert self.ledger is not None
        (writer_step,) = self.sync.agree([self.steps_done])
        if writer_step != self.steps_done:
            raise CheckpointError(
                f"this rank resumed at step {self.steps_done}, the writer rank at step {writer_step}: "
                "checkpoint_dir must be storage every rank reads (a shared folder or object storage)"
            )
        if self._monitor is None:
            self._monitor, self._own_monitor = PowerMonitor(), True
        now = self.clock()
        if self.settings.clock_ns is not None:
            _check_clocks(now, self.clock_ns())
        self.ledger.begin_attempt(now, self.steps_done)
        if self.settings.stop_on_sigterm:
            self._sigterm = _SigtermScope(self._stop)
            self._sigterm.install()
        self._last_checkpoint_mono = time.monotonic()
        self._step_started = now.value
        self._next_decision = now.value if self.step_times.known else None
        self._quiet_until = 0
        self._open_window()
        if self.sync.is_writer:
            for listener in self.settings.listeners:
                listener.session_began(self)

    # --- between steps -----------------------------------------------------------------------------------
    def step(self, loss: Any = None) -> None:
        """One training step is done: time it, count it, and see what is due (decision, window, checkpoint).

        `loss` (a tensor or number) is kept for the report; it is read only when a report is made.
        """
        self._require_running()
        now = self.clock_ns()
        took = now - self._step_started
        self.step_times.add(took / 1e9)
        self._worked_ns += took
        self._step_started = now
        self.steps_done += 1
        self._epoch_energy["steps"] += 1
        if loss is not None:
            self._last_loss = loss
        if self._next_decision is None and self.step_times.known:
            self._next_decision = now  # the first decision waits for a timed step (or a prior)
        if self._quiet(now):
            self._polled_at_step = self.steps_done  # nothing is due: the flags stay clear
        else:
            self._poll(now)

    def should_pause(self) -> bool:
        """Whether the loop should save and return `pause()` now: the grid says hold, or a stop was asked."""
        self._require_running()
        if self._polled_at_step != self.steps_done:
            self._poll(self.clock_ns())  # before the attempt's first step: a resume may still be held
        return bool(self._flags & (_HOLD | _STOP))

    def checkpoint_due(self) -> bool:
        """Whether a periodic checkpoint is due (`checkpoint_every` wall time, `checkpoint_every_steps`)."""
        return bool(self._flags & _CHECKPOINT)

    def stop(self) -> None:
        """Ask the loop to checkpoint and stop at its next step boundary (thread-safe; for on_kill)."""
        self._stop.set()

    def _quiet(self, now: int) -> bool:
        """Whether nothing can be due after this step, so that it needs no poll (a poll costs tens of
        microseconds in a real fit, which matter on a step of a few milliseconds)."""
        return (
            now < self._quiet_until
            and not self._flags
            and not self._stop.is_set()
            and not self._periodic_checkpoint_due()
        )

    def _poll_again_at(self) -> int:
        """The clock (ns) before which no decision or energy window is due; 0 where every step must poll:
        several ranks agree at every step, and the first decision has not been made."""
        if self._next_decision is None or not isinstance(self.sync, LocalSync):
            return 0
        window_due = self._window_clock.value + round(self.settings.measure_every_seconds * 1e9)
        return min(self._next_decision, window_due)

    def _poll(self, now: int) -> None:
        """The writer decides what is due after this step; every rank then acts on the same flags."""
        flags, until_ns = 0, 0
        if self.sync.is_writer:
            if self._stop.is_set():
                flags |= _STOP
            elif self._next_decision is not None and now >= self._next_decision:
                decision = self._decide(utc_from_ns(now))
                decided = self.clock_ns()
                self._step_started = decided  # a slow decision (a provider's retries) is not step time
                self._next_decision = decided + round(self.settings.decision_refresh_seconds * 1e9)
                if decision.action is not Action.RUN and decision.until is not None:
                    flags, until_ns = flags | _HOLD, decision.until.value
            if self._window_due(now):
                flags |= _WINDOW
            if self._periodic_checkpoint_due():
                flags |= _CHECKPOINT
        flags, until_ns = self.sync.agree([flags, until_ns])
        self._flags, self._polled_at_step = flags, self.steps_done
        if flags & _HOLD and not self.sync.is_writer:
            self._hold = Decision(
                Action.PAUSE, "the writer rank's decision", pd.Timestamp(until_ns, tz="UTC")
            )
        elif not flags & _HOLD:
            self._hold = None
        if flags & _WINDOW and not flags & _CHECKPOINT:
            self._close_window()
            self._open_window()
        self._quiet_until = self._poll_again_at()

    def _decide(self, now: pd.Timestamp) -> Decision:
        assert self.ledger is not None
        decision = self.guard.ask(self.settings.strategy, now, self.remaining_work())
        if decision.fallback and (self.decision is None or self.decision.reason != decision.reason):
            self.ledger.note(f"strategy fallback: {decision.reason}")
        self.decision = decision
        self._hold = decision if decision.action is not Action.RUN else None
        return decision

    def remaining_work(self) -> WorkEstimate:
        """The work left, from measured step times, else `expected_duration`, else unknown (see the guard)."""
        return estimate_work(
            steps_left=None if self.total_steps is None else self.total_steps - self.steps_done,
            step_times=self.step_times,
            expected_duration=self.settings.expected_duration,
            worked=self.worked,
        )

    # --- epochs ------------------------------------------------------------------------------------------
    def end_epoch(self, **metrics: Any) -> dict[str, Any]:
        """Close the epoch: its energy becomes a labelled ledger interval and an epoch record (with `metrics`)."""
        self._require_running()
        self._close_window(label=f"epoch {self.epoch}")
        record = {"epoch": self.epoch, **self._epoch_energy, "loss": self.last_loss(), **metrics}
        self.epochs.append(record)
        if self.sync.is_writer:
            for listener in self.settings.listeners:
                listener.epoch_ended(dict(record))
        self.epoch += 1
        self._epoch_energy = {"joules": 0.0, "seconds": 0.0, "steps": 0}
        self._open_window()
        return record

    def last_loss(self) -> float | None:
        loss = self._last_loss
        if loss is None:
            return None
        return float(loss.float().item()) if hasattr(loss, "float") else float(loss)

    # --- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The session's part of a checkpoint (plain data): progress, step times, guard, epochs, ledger."""
        assert self.ledger is not None
        return {
            "progress": {"steps_done": self.steps_done, "epoch": self.epoch,
                         "step_times": self.step_times.to_list(), "worked_seconds": self._worked_ns / 1e9,
                         "epoch_energy": dict(self._epoch_energy)},
            "deadline_guard": self.guard.to_state(),
            "epochs": list(self.epochs),
            "ledger": self.ledger.to_records(),
        }  # fmt: skip

    def save(self, state: dict[str, Any]) -> Path:
        """Checkpoint the loop's `state` (tensors and plain data) with the session's, atomically; rank 0 writes.

        Every rank calls it at the same step (the energy up to here goes into the checkpoint's ledger).
        """
        self._require_running()
        self._close_window()
        path = self._write(state)
        self._open_window()
        return path

    def gather_per_rank(self, value: Any) -> list[Any]:
        """Every rank's `value` as a list by rank, for the state a checkpoint must keep per rank (RNGs).

        Only the writer's `save` state is written, so each rank's own part travels through this: put the list
        in the state on every rank (a collective: every rank calls it at the same step), read it back on
        resume with `entry_for_this_rank`.
        """
        return self.sync.gather(value)

    def entry_for_this_rank(self, gathered: Any) -> Any:
        """This rank's entry of a list `gather_per_rank` made (a checkpoint of the same number of ranks)."""
        if not isinstance(gathered, list):
            raise CheckpointError(
                f"per-rank state must be the list gather_per_rank() made, not a {type(gathered).__name__}: "
                "save carbon.gather_per_rank(value)"
            )
        if len(gathered) != self.sync.world_size:
            raise CheckpointError(
                f"the checkpoint holds per-rank state for {len(gathered)} rank(s) but this job has "
                f"{self.sync.world_size}: resume with as many ranks as wrote it"
            )
        return gathered[self.sync.rank]

    def _write(self, state: dict[str, Any]) -> Path:
        path = self.checkpoint_dir / checkpoint_name(self.steps_done)
        if self.sync.is_writer:
            full = {"format": FORMAT, "carbon": self.state_dict(), "user": state}
            path = save_checkpoint(
                self.checkpoint_dir, full, step=self.steps_done, keep_last=self.settings.keep_checkpoints
            )
        self.checkpointed(path)
        return path

    def checkpointed(self, path: Path) -> None:
        """A checkpoint of this step was written (by `save()`, or by a framework): publish it, restart the timer."""
        self._checkpoint, self._checkpoint_step = path, self.steps_done
        self._last_checkpoint_mono = time.monotonic()
        self._flags &= ~_CHECKPOINT
        if self.sync.is_writer and self.settings.on_checkpoint is not None:
            self.settings.on_checkpoint(path, self.timeline_path)

    def _periodic_checkpoint_due(self) -> bool:
        every_steps, every = self.settings.checkpoint_every_steps, self.settings.checkpoint_every
        fresh = self.steps_done != self._checkpoint_step and self.steps_done > 0
        by_steps = fresh and every_steps is not None and self.steps_done % every_steps == 0
        elapsed = time.monotonic() - self._last_checkpoint_mono
        return by_steps or (every is not None and elapsed >= every.total_seconds())

    # --- waiting in-process ------------------------------------------------------------------------------
    def wait(self) -> bool:
        """Sleep in-process until the held decision's end; False when stopped meanwhile (then `pause()`)."""
        self._require_running()
        hold = self._hold
        if hold is None or hold.until is None:
            return not self._stop.is_set()
        assert self.ledger is not None
        self._close_window()
        self.ledger.begin_pause(self.clock(), hold.until, hold.reason)
        log.info("pausing in-process until %s: %s", hold.until.isoformat(), hold.reason)
        while (left := (hold.until - self.clock()).total_seconds()) > 0:
            if self._stop.wait(min(self.settings.wait_poll_seconds, left)):
                break
        now = self.clock()
        self.ledger.end_pause(now)
        self._open_window()
        self.step_times.restart()
        self._step_started = now.value
        self._hold, self._flags = None, self._flags & ~_HOLD
        self._next_decision, self._quiet_until = now.value, 0
        self._polled_at_step = -1
        return not self._stop.is_set()

    # --- ending ------------------------------------------------------------------------------------------
    def pause(
        self, state: dict[str, Any] | None = None, *, write: CheckpointWriter | None = None
    ) -> TrainingResult:
        """End the attempt "paused until" the held decision (or "stopped" when a stop was asked).

        The last checkpoint is written after the attempt's end is recorded, so it holds the whole attempt:
        `state` is saved by the session, or `write()` writes a framework's own checkpoint of this step (with
        `state_dict()` inside) and returns its path. Without either, a checkpoint of this step must exist
        already, or the pause would lose the work since the last one.
        """
        stopped = self._stop.is_set() or self._hold is None
        hold = None if stopped else self._hold
        return self._end("stopped" if stopped else "paused", hold, state, write)

    def finish(
        self, state: dict[str, Any] | None = None, *, write: CheckpointWriter | None = None
    ) -> TrainingResult:
        """End the attempt "completed", with `state` (or `write()`) as the final checkpoint, as in `pause()`."""
        return self._end("completed", None, state, write)

    def close(self) -> None:
        """Release the monitor and the SIGTERM handler; an attempt never ended counts as "failed"."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.ledger is not None and self._ended is None:
                if self._window_open:  # an exception may come between a window's close and the next open
                    # this rank's energy only: the other ranks may never reach a collective again
                    measured = self.sync.own(self.monitor.end_window(self._key))
                    if self.sync.is_writer:
                        self.ledger.add_energy(
                            self._window_clock, self.clock(), measured.joules, measured.sources
                        )
                if self.sync.is_writer:
                    self.ledger.end_attempt("failed")
        finally:
            self._release()

    def _end(
        self, status: str, hold: Decision | None, state: dict[str, Any] | None, write: CheckpointWriter | None
    ) -> TrainingResult:
        self._require_running()
        assert self.ledger is not None
        unsaved = state is None and write is None and self._checkpoint_step != self.steps_done
        if unsaved and status != "completed":
            raise CheckpointError(
                f"{status} at step {self.steps_done} without a checkpoint of it: pass the loop's state "
                "(or save() it) first, so the resumed run goes on from here"
            )
        self._close_window()
        if hold is not None:
            self.ledger.begin_pause(self.clock(), hold.until, hold.reason)
        self.ledger.end_attempt(status)
        if state is not None:
            self._write(state)  # last: the checkpoint's ledger holds the whole attempt
        elif write is not None:
            self.checkpointed(write())
        if status == "stopped":
            why = "SIGTERM: " if self._sigterm is not None and self._sigterm.received else ""
            log.info("%sstopped at step %d with a checkpoint", why, self.steps_done)
        result = TrainingResult(
            status=status,
            paused_until=None if hold is None else hold.until,
            checkpoint_path=None if self._checkpoint is None else str(self._checkpoint),
            steps_done=self.steps_done,
            epoch=self.epoch,
            report=self.ledger.report(),
            decision=hold if hold is not None else self.decision,
            timeline_path=str(self.timeline_path),
            last_loss=self.last_loss(),
            epochs=list(self.epochs),
            power_notes=self.monitor.notes(),
            started_at_step=self.ledger.attempts[-1].from_step,
        )
        self._ended = result
        if self.sync.is_writer:
            for listener in self.settings.listeners:
                listener.session_ended(result)
        self._release()
        return result

    @property
    def monitor(self) -> PowerMonitor:
        if self._monitor is None:
            raise InvalidInputError("the session has not begun: call resume() or begin() first")
        return self._monitor

    def _release(self) -> None:
        if self._own_monitor and self._monitor is not None:
            self._own_monitor = False
            self._monitor.close()
        if self._sigterm is not None:
            scope, self._sigterm = self._sigterm, None
            scope.uninstall()

    def _require_running(self) -> None:
        if self.ledger is None:
            raise InvalidInputError("the session has not begun: call resume() or begin() first")
        if self._ended is not None:
            raise InvalidInputError(f"the session has ended ({self._ended.status}); use a new one")

    # --- energy windows ----------------------------------------------------------------------------------
    def _open_window(self) -> None:
        self._window_open = True
        self.monitor.begin_window(self._key)
        self._window_clock = self.clock()
        self._window_mono = time.monotonic()

    def _window_due(self, now: int) -> bool:
        """`measure_every_seconds` of clock (grid) time have passed, and at least a second of wall time (or
        `measure_every_seconds` if shorter), since energy counters update only about every 100 ms."""
        every = self.settings.measure_every_seconds
        grid = (now - self._window_clock.value) / 1e9
        wall = time.monotonic() - self._window_mono
        return grid >= every and wall >= min(every, 1.0)

    def _close_window(self, label: str | None = None) -> None:
        assert self.ledger is not None
        self._window_open = False
        measured = self.sync.total(self.monitor.end_window(self._key))
        if self.sync.is_writer:
            self.ledger.add_energy(
                self._window_clock, self.clock(), measured.joules, measured.sources, label=label
            )
        self._epoch_energy["joules"] += measured.total_joules
        self._epoch_energy["seconds"] += measured.seconds

    # --- the emissions timeline --------------------------------------------------------------------------
    def _new_ledger(self, path: Path | None) -> EmissionsLedger:
        return EmissionsLedger(
            zone=self.settings.zone, submitted_at=self.clock(), pue=self.settings.pue, lookup=self._lookup,
            jsonl_path=path,
        )  # fmt: skip

    def _start_ledger(self, *, keep_timeline: bool) -> None:
        """A new ledger and timeline, or (`keep_timeline`) the timeline of earlier attempts, continued.

        Only the writer rank keeps a timeline file; the other ranks' ledgers stay in memory."""
        if not self.sync.is_writer:
            self.ledger = self._new_ledger(None)
            return
        kept = self._read_timeline() if keep_timeline else None
        if kept is not None:
            self.ledger = kept
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = self._new_ledger(self.timeline_path)
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
        self._check_pue(ledger.pue, f"the timeline {path}")
        ledger.lookup, ledger.jsonl_path = self._lookup, path
        return ledger

    def _check_pue(self, found: float, where: str) -> None:
        if found != self.settings.pue:
            raise InvalidInputError(
                f"pue={self.settings.pue} differs from pue={found} of {where}; resume with the same PUE"
            )

    def _resume_ledger(self, from_checkpoint: EmissionsLedger) -> EmissionsLedger:
        """The timeline (every attempt's energy) merged with the checkpoint's ledger, nothing counted twice."""
        if not self.sync.is_writer:
            return from_checkpoint
        ledger = self._read_timeline()
        if ledger is None:
            from_checkpoint.jsonl_path = self.timeline_path
            from_checkpoint.write_jsonl()
            return from_checkpoint
        ledger.absorb(from_checkpoint)
        saved = {(i.start, i.end) for i in from_checkpoint.intervals}
        lost = sum(1 for i in ledger.intervals if (i.start, i.end) not in saved)
        if lost:
            ledger.note(
                f"{lost} interval(s) measured after the last checkpoint (step {self.steps_done}) were re-run "
                "after a crash; their energy is kept"
            )
        return ledger

    def _restore(self, state: dict[str, Any], source: str | Path | None) -> None:
        try:
            progress = state["progress"]
            self.steps_done, self.epoch = int(progress["steps_done"]), int(progress["epoch"])
            self.step_times = StepTimes(progress["step_times"], prior=self.settings.estimated_step_seconds)
            self._worked_ns = round(float(progress["worked_seconds"]) * 1e9)
            self._epoch_energy = {k: float(v) for k, v in progress["epoch_energy"].items()}
            self._epoch_energy["steps"] = int(self._epoch_energy.get("steps", 0))
            self.guard.restore(state["deadline_guard"])
            self.epochs = list(state["epochs"])
            saved = EmissionsLedger.from_records(state["ledger"], lookup=self._lookup)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source or 'the checkpoint'} holds no valid session state: {exc}"
            ) from exc
        self._check_pue(saved.pue, f"the checkpoint {source or ''}".rstrip())
        ledger = self._resume_ledger(saved)
        ledger.end_pause(self.clock())
        self.ledger = ledger
        self._checkpoint = None if source is None else Path(source)
        self._checkpoint_step = self.steps_done
        log.info(
            "resumed from %s at epoch %d, step %d", source or "a checkpoint", self.epoch, self.steps_done
        )


def _clock_ns(settings: SessionSettings) -> Callable[[], int]:
    """The session's per-step clock: `clock_ns`, else the wall clock's, else `clock()` read as integers."""
    if settings.clock_ns is not None:
        return settings.clock_ns
    clock = settings.clock
    if clock is None:
        return time.time_ns
    return lambda: clock().value


def _check_clocks(now: pd.Timestamp, now_ns: int) -> None:
    """`clock` and `clock_ns` must be one clock: decisions read one and step times the other."""
    if abs(now.value - now_ns) > 1_000_000_000:
        raise InvalidInputError(
            f"clock() says {now.isoformat()} but clock_ns() says {utc_from_ns(now_ns).isoformat()}; "
            "give clock_ns the same clock in integer nanoseconds (or leave it unset)"
        )


class _SigtermScope:
    """SIGTERM sets the stop flag; uninstalling hands a received signal on to the handler it replaced.

    Airflow's handler calls `on_kill`, Prefect's raises the cancellation, the default ends the process:
    each now after the checkpoint. Signals can be handled only in the main thread.
    """

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self.received = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.received = True
        self._stop.set()

    def uninstall(self) -> None:
        if not self._installed:
            return
        signal.signal(signal.SIGTERM, self._previous)
        self._installed = False
        if self.received:
            if callable(self._previous):
                self._previous(signal.SIGTERM, None)
            elif self._previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def carbon_session(
    checkpoint_dir: str | Path,
    *,
    total_steps: int | None = None,
    sync: RankSync | None = None,
    **settings: Any,
) -> Iterator[CarbonSession]:
    """A session for a hand-written loop (`settings` as `SessionSettings`), closed on leaving the block.

    Call `resume()` first: it begins the attempt. Leaving the block without `pause()` or `finish()` (an
    exception) records the attempt as failed; its energy stays in the timeline.
    """
    session = CarbonSession(checkpoint_dir, session_settings(**settings), total_steps=total_steps, sync=sync)
    try:
        yield session
    finally:
        session.close()
