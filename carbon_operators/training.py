"""`CarbonAwareTrainingOperator`: PyTorch training that checkpoints and defers when the grid is dirty.

The training runner trains until its strategy says pause; the operator then defers on a `DateTimeTrigger`
to the pause's end (the worker slot is freed) and `execute_complete` resumes from the checkpoint. The
XCom return value is the emissions report (small JSON: numbers, sources and the checkpoint's path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import pandas as pd
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from carbon_operators.links import CarbonIntensityLink
from carbon_operators.policy import PERMANENT_ERRORS, deferral_timeout, failing_bad_input
from carbon_operators.storage import CheckpointStore
from carbon_operators.target import CarbonTarget, resolve_target
from carbon_operators.triggers import ResumeAtTrigger, adopt_replay_of
from carbon_sensors import strategies
from carbon_sensors.deadline import (
    ORCHESTRATOR_RESUME_OVERHEAD,
    DeadlineGuard,
    WorkEstimate,
    resume_margin,
)
from carbon_sensors.decision import Action, Strategy
from carbon_sensors.emissions import report_summary
from carbon_sensors.errors import CarbonAwareError, InvalidInputError
from carbon_sensors.options import option_mapping
from carbon_sensors.paths import run_key
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.timeutil import parse_duration

if TYPE_CHECKING:  # torch: imported when a task trains, not when a DAG file is parsed
    from carbon_sensors.training import CarbonSession, Trainable
    from carbon_sensors.training.session import SessionListener

StrategyFactory = Callable[..., Strategy]


class TrainingCallableError(AirflowException):
    """The user's training code raised; the message names the callable and the original error."""


def build_strategy(
    spec: str | StrategyFactory, options: Mapping[str, Any], source: IntensitySource, zone: str
) -> Strategy:
    """A strategy by name ('threshold', 'adaptive', 'forecast-window') or from a factory(source, zone, **options).

    Whichever it is, the deadline guard (`carbon_sensors.deadline`) stands above it.
    """
    if callable(spec):
        return spec(source, zone, **options)
    if spec not in strategies.STRATEGIES:
        raise InvalidInputError(
            f"strategy={spec!r} is not valid; use one of {list(strategies.STRATEGIES)} or a factory"
        )
    return strategies.build_strategy(spec, source, zone, options)


def _run_key(context: Context, task_id: str) -> str:
    """`<dag_id>/<run_id>/<task_id>[/<map_index>]`: every attempt of one task instance shares its folder."""
    dag_run = context.get("dag_run")
    map_index = getattr(context.get("ti"), "map_index", -1)
    segments: dict[str, object] = {
        "dag_id": getattr(dag_run, "dag_id", None) or "dag",
        "run_id": getattr(dag_run, "run_id", None) or "manual",
        "task_id": task_id,
    }
    if isinstance(map_index, int) and map_index >= 0:
        segments["map_index"] = map_index
    return run_key(**segments)


class CarbonAwareTrainingOperator(BaseOperator):
    """Run `training_callable(**op_kwargs)` carbon-aware, pausing by checkpoint and deferral.

    Each task instance trains in its own folder `<checkpoint_dir>/<dag_id>/<run_id>/<task_id>[/<map_index>]`,
    where the emissions timeline is published too. Every attempt resumes from the newest checkpoint there: a
    retry after a lost worker goes on from the last periodic checkpoint, and a rerun of a finished task
    returns its result without training again (trigger a new DAG run to retrain).

    :param training_callable: returns the job to train: a `TrainingJob` (our loop), a `LightningJob` or an
        `HFTrainerJob` (`carbon_sensors.integrations`), anything `Trainable`; called on every attempt.
    :param op_kwargs: keyword arguments for `training_callable` (templated).
    :param zone: the grid zone ('DE'); default: the connection's zone.
    :param carbon_conn_id: the `carbon_intensity` connection naming the source and its key; default: recorded
        traces (offline).
    :param strategy: a strategy of `carbon_sensors.strategies` by name ('threshold', the default), or a factory
        `(source, zone, **strategy_kwargs) -> Strategy`.
    :param strategy_kwargs: the strategy's options (checked against its schema: an unknown one is an error).
    :param checkpoint_dir: a local folder or an object-storage URL (`s3://conn_id@bucket/prefix`); default: a
        folder under the system temp dir. On a CeleryExecutor or Kubernetes use object storage or a folder
        every worker shares: a worker's local folder does not follow the task.
    :param checkpoint_every: wall time between periodic checkpoints ('5min', the default; None: only at
        pauses, stops and the end); a lost worker costs at most this much training.
    :param checkpoint_every_steps: also checkpoint every this many steps.
    :param deadline: finish-by time (aware ISO or datetime, grid time); default: the run's data interval end
        (else its run-after time, else now) plus `deadline_allowance`. Whatever the strategy says, training (re)starts by the deadline minus an upper
        estimate of the remaining work minus `resume_overhead`; once that guard says run, it never pauses
        again. A run that starts after its deadline (a late rerun) trains at once, with a warning.
    :param deadline_allowance: how long after that training must finish (default 12 h).
    :param decision_refresh_seconds: grid seconds a strategy decision is reused for (default 30).
    :param pue: the data centre's power usage effectiveness, in [1, 5] (default 1): measured energy times this.
    :param expected_duration: how long the whole training runs ('3h'), for a data loader without `len()`
        and without `max_steps`; without it such a job is assumed to need all the time to the deadline.
    :param resume_overhead: wall time from "resume" to the first resumed step (scheduler, worker pick-up,
        DAG re-parse), kept as a margin before the deadline; default 2 minutes.
    :param mlflow_tracking_uri: log emissions per epoch, the report and the timeline to this MLflow tracking
        store (the `mlflow` extra), one MLflow run per task instance across deferrals, retries and workers.
    :param mlflow_experiment: the MLflow experiment of those runs; default the DAG id.
    :param on_outage: without carbon data, 'open' trains on, 'closed' pauses (bounded by the strategy's
        max_pause and the deadline); default: the strategy's own `on_error` (open). Built-in strategies only.
    """

    template_fields: Sequence[str] = (
        "zone", "checkpoint_dir", "deadline", "carbon_conn_id", "op_kwargs", "mlflow_tracking_uri", "mlflow_experiment",
    )  # fmt: skip
    operator_extra_links = (CarbonIntensityLink(),)
    ui_color = "#81c784"

    def __init__(
        self,
        *,
        training_callable: Callable[..., Trainable],
        op_kwargs: Mapping[str, Any] | None = None,
        zone: str | None = None,
        carbon_conn_id: str | None = None,
        strategy: str | StrategyFactory = "threshold",
        strategy_kwargs: Mapping[str, Any] | None = None,
        checkpoint_dir: str | None = None,
        checkpoint_every_steps: int | None = None,
        checkpoint_every: timedelta | str | None = "5min",
        deadline: datetime | str | None = None,
        deadline_allowance: timedelta | str | None = None,
        decision_refresh_seconds: float = 30.0,
        pue: float = 1.0,
        expected_duration: timedelta | str | None = None,
        resume_overhead: timedelta | str = ORCHESTRATOR_RESUME_OVERHEAD,
        on_outage: str | None = None,
        mlflow_tracking_uri: str | None = None,
        mlflow_experiment: str | None = None,
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
        self.strategy_kwargs = option_mapping(strategy_kwargs, "strategy_kwargs")
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every_steps = checkpoint_every_steps
        self.checkpoint_every = checkpoint_every
        self.deadline = deadline
        self.deadline_allowance = deadline_allowance
        self.decision_refresh_seconds = decision_refresh_seconds
        self.pue = pue
        self.expected_duration = expected_duration
        self.resume_overhead = resume_overhead
        self.on_outage = on_outage
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.mlflow_experiment = mlflow_experiment
        self._session: CarbonSession | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        target, strategy = self._setting(context, paused_since=None)
        if target.clock.now() >= target.deadline:
            self.log.warning(
                "late run: the deadline %s has passed; training at once", target.deadline.isoformat()
            )
        return self._train(context, target, strategy, self._guard(target), resume_from=None, deferrals=0)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Woken after a pause: ask the guarded strategy first (cheap); still held -> defer again, else resume."""
        adopt_replay_of(event)  # the deferring process's replay clock, not a fresh one
        try:
            paused = _Pause(**(event or {})["state"])
            work = WorkEstimate.from_dict(paused.work)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"resumed with event {event!r}, which carries no pause state") from exc
        target, strategy = self._setting(context, paused_since=paused.paused_since)
        guard = self._guard(target)
        guard.restore(paused.guard)
        decision = guard.ask(strategy, target.clock.now(), work)
        if decision.action is not Action.RUN:
            assert decision.until is not None
            again = replace(
                paused,
                deferrals=paused.deferrals + 1,
                paused_since=_paused_since(strategy),
                guard=guard.to_state(),
            )
            self._defer(target, decision.until, decision.reason, again)
        self.log.info("resuming: %s", decision.reason)
        return self._train(
            context, target, strategy, guard, resume_from=paused.checkpoint_path, deferrals=paused.deferrals
        )

    def on_kill(self) -> None:
        """Stop training at the next step boundary; the runner checkpoints (and publishes) before it returns.

        Airflow calls this on SIGTERM (a worker shutting down, a task marked failed) as well.
        """
        if self._session is not None:
            self._session.stop()

    # --- internals -------------------------------------------------------------------------------------
    def _setting(self, context: Context, *, paused_since: str | None) -> tuple[CarbonTarget, Strategy]:
        with failing_bad_input(self.task_id):
            target = resolve_target(context, self)
            self._check_source(target)
            options = (
                self.strategy_kwargs
                if callable(self.strategy)
                else strategies.with_outage_policy(self.strategy_kwargs, self.on_outage)
            )
            strategy = build_strategy(self.strategy, options, target.source, target.zone)
        if paused_since is not None and hasattr(strategy, "paused_since"):
            strategy.paused_since = pd.Timestamp(paused_since)  # its max-pause clock survives the deferral
        return target, strategy

    def _guard(self, target: CarbonTarget) -> DeadlineGuard:
        """The deadline guard, its resume margin turned into grid time (it is wall time the scheduler spends)."""
        with failing_bad_input(self.task_id):
            margin = resume_margin(self.resume_overhead, target.clock)
        return DeadlineGuard(target.deadline, resume_overhead=margin)

    def _check_source(self, target: CarbonTarget) -> None:
        """An unknown zone or a refused key fails here, not mid-run; an outage is left to the strategy."""
        try:
            target.source.latest(target.zone)
        except PERMANENT_ERRORS:
            raise
        except CarbonAwareError as exc:
            self.log.warning("carbon data unavailable at start (%s); the strategy's fallback decides", exc)

    def _job(self) -> Trainable:
        from carbon_sensors.training import Trainable  # torch: only where a task trains

        name = getattr(self.training_callable, "__qualname__", repr(self.training_callable))
        try:
            job = self.training_callable(**self.op_kwargs)
        except Exception as exc:
            raise TrainingCallableError(
                f"{self.task_id}: training_callable {name} raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(job, Trainable):
            raise InvalidInputError(
                f"training_callable {name} returned {type(job).__name__}; it must return a TrainingJob, "
                "LightningJob or HFTrainerJob (anything with total_steps() and train(session, resume_from))"
            )
        return job

    def _train(
        self,
        context: Context,
        target: CarbonTarget,
        strategy: Strategy,
        guard: DeadlineGuard,
        *,
        resume_from: str | None,
        deferrals: int,
    ) -> dict[str, Any]:
        store = CheckpointStore(self.checkpoint_dir, _run_key(context, self.task_id))
        with failing_bad_input(self.task_id):
            job = self._job()
            session = self._session = self._new_session(job, target, strategy, guard, store, context)
        start = store.resume_point(resume_from)
        try_number = getattr(context.get("ti"), "try_number", 1)
        retry = isinstance(try_number, int) and try_number > 1
        if retry and not store.remote and not any(store.local_dir.glob("checkpoint-*.pt")):
            self.log.warning(
                "try %s finds no checkpoint in %s: if an earlier try ran on another worker, its checkpoints "
                "are on that worker's disk; use shared or object storage (s3://conn_id@bucket/prefix)",
                try_number,
                store.location,
            )
        try:
            result = job.train(session, start)
        except Exception as exc:
            raise TrainingCallableError(
                f"{self.task_id}: training failed at step {session.steps_done} with "
                f"{type(exc).__name__}: {exc}; last checkpoint in {store.location}"
            ) from exc
        finally:
            session.close()
        checkpoint = None if result.checkpoint_path is None else store.published(result.checkpoint_path)
        if result.started_at_step:
            self.log.info("resumed from the checkpoint at step %d", result.started_at_step)
        self.log.info(
            "training %s at step %d: %s",
            result.status,
            result.steps_done,
            report_summary(result.report.to_dict()),
        )
        if result.status == "paused":
            assert result.paused_until is not None and checkpoint is not None
            work = session.remaining_work().to_dict()
            pause = _Pause(checkpoint, deferrals + 1, work, _paused_since(strategy), session.guard.to_state())
            reason = "" if result.decision is None else result.decision.reason
            self._defer(target, result.paused_until, f"step {result.steps_done}: {reason}", pause)
        if result.status == "stopped":
            raise AirflowException(
                f"{self.task_id}: training stopped at step {result.steps_done}; checkpoint {checkpoint}"
            )
        return {
            **result.to_dict(),
            "checkpoint_path": checkpoint,
            "timeline_path": store.timeline(),
            "deferrals": deferrals,
        }

    def _new_session(
        self,
        job: Trainable,
        target: CarbonTarget,
        strategy: Strategy,
        guard: DeadlineGuard,
        store: CheckpointStore,
        context: Context,
    ) -> CarbonSession:
        """The carbon session of one attempt, from the operator's parameters; it holds what the guard said."""
        from carbon_sensors.training import CarbonSession  # torch: only where a task trains
        from carbon_sensors.training.session import settings_on_clock

        expected = (
            None
            if self.expected_duration is None
            else parse_duration(self.expected_duration, "expected_duration")
        )
        every = (
            None
            if self.checkpoint_every is None
            else parse_duration(self.checkpoint_every, "checkpoint_every")
        )
        settings = settings_on_clock(
            target.clock,
            strategy=strategy,
            zone=target.zone,
            intensity_source=target.source,
            deadline=target.deadline,
            checkpoint_every_steps=self.checkpoint_every_steps,
            checkpoint_every=every,
            on_checkpoint=store.on_checkpoint,
            decision_refresh_seconds=self.decision_refresh_seconds,
            pue=self.pue,
            expected_duration=expected,
            resume_overhead=guard.resume_overhead,
            listeners=self._listeners(context),
        )
        session = CarbonSession(store.local_dir, settings, total_steps=job.total_steps())
        session.guard.restore(guard.to_state())  # what the guard said at the wake holds in the run
        return session

    def _listeners(self, context: Context) -> list[SessionListener]:
        """MLflow tracking when a tracking URI is given: one MLflow run per task instance (its run key)."""
        if self.mlflow_tracking_uri is None:
            return []
        from carbon_sensors.integrations.mlflow import MlflowListener

        dag_id = getattr(context.get("dag_run"), "dag_id", None) or "dag"
        return [
            MlflowListener(
                tracking_uri=self.mlflow_tracking_uri,
                experiment=self.mlflow_experiment or dag_id,
                run_name=self.task_id,
                job=_run_key(context, self.task_id),
            )
        ]

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
    work: dict[str, Any]  # WorkEstimate.to_dict(): the remaining work, measured before the pause
    paused_since: str | None
    guard: dict[str, Any]  # DeadlineGuard.to_state()


def _paused_since(strategy: Strategy) -> str | None:
    since = getattr(strategy, "paused_since", None)
    return None if since is None else pd.Timestamp(since).isoformat()
