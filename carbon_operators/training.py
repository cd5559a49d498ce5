"""`CarbonAwareTrainingOperator`: PyTorch training that checkpoints and defers when the grid is dirty.

The training runner trains until its strategy says pause; the operator then defers on a `DateTimeTrigger`
to the pause's end (the worker slot is freed) and `execute_complete` resumes from the checkpoint. The
XCom return value is the emissions report (small JSON: numbers, sources and the checkpoint's path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

import pandas as pd
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from carbon_operators.links import CarbonIntensityLink
from carbon_operators.policy import (
    PERMANENT_ERRORS,
    deferral_timeout,
    failing_bad_input,
    require_future_deadline,
)
from carbon_operators.storage import CheckpointStore
from carbon_operators.target import CarbonTarget, resolve_target
from carbon_operators.triggers import ResumeAtTrigger, adopt_replay_of
from carbon_sensors import strategies
from carbon_sensors.decision import Action, Strategy
from carbon_sensors.errors import CarbonAwareError, InvalidInputError
from carbon_sensors.paths import run_key
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.training import TrainingJob, TrainingRunner

StrategyFactory = Callable[..., Strategy]


class TrainingCallableError(AirflowException):
    """The user's training code raised; the message names the callable and the original error."""


def build_strategy(
    spec: str | StrategyFactory, options: Mapping[str, Any], source: IntensitySource, zone: str
) -> Strategy:
    """A strategy by name ('threshold', 'adaptive', 'forecast-window') or from a factory(source, zone, **options)."""
    if callable(spec):
        return spec(source, zone, **options)
    if spec not in strategies.STRATEGIES:
        raise InvalidInputError(
            f"strategy={spec!r} is not valid; use one of {list(strategies.STRATEGIES)} or a factory"
        )
    return strategies.build_strategy(spec, source, zone, options)


def _run_key(context: Context, task_id: str) -> str:
    dag_run = context.get("dag_run")
    return run_key(
        dag_id=getattr(dag_run, "dag_id", None) or "dag",
        run_id=getattr(dag_run, "run_id", None) or "manual",
        task_id=task_id,
    )


class CarbonAwareTrainingOperator(BaseOperator):
    """Run `training_callable(**op_kwargs) -> TrainingJob` carbon-aware, pausing by checkpoint and deferral.

    `strategy` names a strategy of `carbon_sensors.strategies` (built with `strategy_kwargs`) or is a factory
    `(source, zone, **strategy_kwargs) -> Strategy`. `checkpoint_dir` is a local folder or an object-storage
    URL; by default a per-run folder under the system temp dir. The deadline is explicit or the run's data
    interval end plus `deadline_allowance`; the runner never holds past the latest start that meets it.
    """

    template_fields: Sequence[str] = ("zone", "checkpoint_dir", "deadline", "carbon_conn_id", "op_kwargs")
    operator_extra_links = (CarbonIntensityLink(),)
    ui_color = "#81c784"

    def __init__(
        self,
        *,
        training_callable: Callable[..., TrainingJob],
        op_kwargs: Mapping[str, Any] | None = None,
        zone: str | None = None,
        carbon_conn_id: str | None = None,
        strategy: str | StrategyFactory = "threshold",
        strategy_kwargs: Mapping[str, Any] | None = None,
        checkpoint_dir: str | None = None,
        checkpoint_every_steps: int | None = None,
        deadline: datetime | str | None = None,
        deadline_allowance: timedelta | str | None = None,
        decision_refresh_seconds: float = 30.0,
        pue: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(training_callable):
            raise InvalidInputError(f"training_callable={training_callable!r} is not callable")
        self.training_callable = training_callable
        self.op_kwargs = dict(op_kwargs or {})
        self.zone = zone
        self.carbon_conn_id = carbon_conn_id
        self.strategy = strategy
        self.strategy_kwargs = dict(strategy_kwargs or {})
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every_steps = checkpoint_every_steps
        self.deadline = deadline
        self.deadline_allowance = deadline_allowance
        self.decision_refresh_seconds = decision_refresh_seconds
        self.pue = pue
        self._runner: TrainingRunner | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        target, strategy = self._setting(context, first=True, paused_since=None)
        return self._train(context, target, strategy, resume_from=None, deferrals=0)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Woken after a pause: ask the strategy first (cheap); still dirty -> defer again, else resume."""
        adopt_replay_of(event)  # the deferring process's replay clock, not a fresh one
        try:
            paused = _Pause(**(event or {})["state"])
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"resumed with event {event!r}, which carries no pause state") from exc
        target, strategy = self._setting(context, first=False, paused_since=paused.paused_since)
        decision = strategy.decide(
            target.clock.now(),
            remaining_work=timedelta(seconds=paused.remaining_seconds),
            deadline=target.deadline,
        )
        if decision.action is not Action.RUN:
            assert decision.until is not None
            again = replace(paused, deferrals=paused.deferrals + 1, paused_since=_paused_since(strategy))
            self._defer(target, decision.until, decision.reason, again)
        return self._train(
            context, target, strategy, resume_from=paused.checkpoint_path, deferrals=paused.deferrals
        )

    def on_kill(self) -> None:
        """Stop training at the next step boundary; the runner writes a checkpoint before it returns."""
        if self._runner is not None:
            self._runner.stop()

    # --- internals -------------------------------------------------------------------------------------
    def _setting(
        self, context: Context, *, first: bool, paused_since: str | None
    ) -> tuple[CarbonTarget, Strategy]:
        with failing_bad_input(self.task_id):
            target = resolve_target(context, self)
            if first:
                require_future_deadline(target.deadline, target.clock.now(), timedelta(0), "training")
            self._check_source(target)
            strategy = build_strategy(self.strategy, self.strategy_kwargs, target.source, target.zone)
        if paused_since is not None and hasattr(strategy, "paused_since"):
            strategy.paused_since = pd.Timestamp(paused_since)  # its max-pause clock survives the deferral
        return target, strategy

    def _check_source(self, target: CarbonTarget) -> None:
        """An unknown zone or a refused key fails here, not mid-run; an outage is left to the strategy."""
        try:
            target.source.latest(target.zone)
        except PERMANENT_ERRORS:
            raise
        except CarbonAwareError as exc:
            self.log.warning("carbon data unavailable at start (%s); the strategy's fallback decides", exc)

    def _job(self) -> TrainingJob:
        name = getattr(self.training_callable, "__qualname__", repr(self.training_callable))
        try:
            job = self.training_callable(**self.op_kwargs)
        except Exception as exc:
            raise TrainingCallableError(
                f"{self.task_id}: training_callable {name} raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(job, TrainingJob):
            raise InvalidInputError(
                f"training_callable {name} returned {type(job).__name__}; it must return a TrainingJob"
            )
        return job

    def _train(
        self,
        context: Context,
        target: CarbonTarget,
        strategy: Strategy,
        *,
        resume_from: str | None,
        deferrals: int,
    ) -> dict[str, Any]:
        store = CheckpointStore(self.checkpoint_dir, _run_key(context, self.task_id))
        with failing_bad_input(self.task_id):
            job = self._job()
        runner = self._runner = TrainingRunner(
            job,
            checkpoint_dir=store.local_dir,
            strategy=strategy,
            zone=target.zone,
            intensity_source=target.source,
            deadline=target.deadline,
            clock=target.clock.now,
            checkpoint_every_steps=self.checkpoint_every_steps,
            decision_refresh_seconds=self.decision_refresh_seconds,
            pue=self.pue,
        )
        local_resume = None if resume_from is None else store.fetch(resume_from)
        try:
            result = runner.run(resume_from=local_resume)
        except Exception as exc:
            raise TrainingCallableError(
                f"{self.task_id}: training failed at step {runner.steps_done} with "
                f"{type(exc).__name__}: {exc}; last checkpoint in {store.location}"
            ) from exc
        checkpoint = None if result.checkpoint_path is None else store.publish(result.checkpoint_path)
        if result.status == "paused":
            assert result.paused_until is not None and checkpoint is not None
            remaining = runner.guard.strategy_work(runner.remaining_work()).total_seconds()
            pause = _Pause(checkpoint, deferrals + 1, remaining, _paused_since(strategy))
            reason = "" if result.decision is None else result.decision.reason
            self._defer(target, result.paused_until, f"step {result.steps_done}: {reason}", pause)
        if result.status == "stopped":
            raise AirflowException(
                f"{self.task_id}: training stopped at step {result.steps_done}; checkpoint {checkpoint}"
            )
        return {**result.to_dict(), "checkpoint_path": checkpoint, "deferrals": deferrals}

    def _defer(self, target: CarbonTarget, until: pd.Timestamp, reason: str, pause: _Pause) -> NoReturn:
        """Free the worker until grid time `until`; the checkpoint's path travels in the deferral kwargs."""
        wall_until = target.clock.to_wall(until)
        self.log.info(
            "training paused until %s (wall %s), deferral %d: %s; checkpoint %s",
            until.isoformat(),
            wall_until.isoformat(),
            pause.deferrals,
            reason,
            pause.checkpoint_path,
        )
        self.defer(
            trigger=ResumeAtTrigger(wall_until.to_pydatetime(), state=asdict(pause)),
            method_name="execute_complete",
            timeout=deferral_timeout(target.wall_deadline),
        )


@dataclass(frozen=True)
class _Pause:
    """What a paused training carries through its deferral (JSON primitives only)."""

    checkpoint_path: str
    deferrals: int
    remaining_seconds: float
    paused_since: str | None


def _paused_since(strategy: Strategy) -> str | None:
    since = getattr(strategy, "paused_since", None)
    return None if since is None else pd.Timestamp(since).isoformat()
