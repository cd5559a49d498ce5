"""Carbon-aware PyTorch training as a Prefect task and flow, with artifacts and events.

The core does the work: a `CarbonSession` per attempt, trained by the job (`TrainingJob`'s runner, or a
Lightning / Hugging Face job from `carbon_sensors.integrations`). On "pause" it checkpoints and returns; this module then either waits
in-process (short pauses, or no deployment to reschedule) and resumes in a fresh runner, or schedules a run
of the current deployment at the resume time with `resume_from` set to the checkpoint, and ends this run as
'Rescheduled'. Artifacts: a markdown emissions report, a per-epoch table and live progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.utilities.importtools import import_object

from carbon_flows import events
from carbon_flows.artifacts import (
    TRAINING_TAG,
    LiveProgress,
    emissions_rows,
    publish_epoch_table,
    publish_markdown,
    run_chart,
    training_id,
    training_key,
)
from carbon_flows.jobs import require_allowed_job
from carbon_flows.rescheduling import (
    current_deployment_run,
    reschedule_current_run,
    rescheduled_state,
    tag_times,
)
from carbon_flows.sources import SourceSpec, clock_of, resolve_source
from carbon_flows.storage import CheckpointStore
from carbon_flows.wait import (
    BAD_SETUP,
    DEADLINE_TAG,
    PREFECT_RESUME_OVERHEAD,
    resolve_deadline,
    run_logger,
    wait_for_low_carbon,
)
from carbon_sensors import strategies
from carbon_sensors.deadline import resume_margin, upper_work
from carbon_sensors.decision import Strategy
from carbon_sensors.emissions import read_jsonl, report_summary
from carbon_sensors.errors import CarbonAwareError, InvalidInputError
from carbon_sensors.options import option_mapping
from carbon_sensors.paths import run_key
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.timeutil import parse_duration, parse_utc, utcnow

if TYPE_CHECKING:  # torch: imported when a flow trains, not when a flow file is loaded
    from carbon_sensors.training import CarbonSession, Trainable, TrainingResult
    from carbon_sensors.training.session import SessionListener

JobSpec: TypeAlias = "str | Trainable | Callable[[], Trainable]"
STRATEGIES = ("none", *strategies.STRATEGIES)
DEFAULT_MAX_PAUSE = "6h"
PAUSED_SINCE_TAG = "carbon-aware:paused-since:"  # + when the pause that rescheduled the run began


@dataclass(frozen=True)
class TrainingOutcome:
    """The last runner result, and whether the rest of the training was handed to a scheduled run."""

    result: TrainingResult
    rescheduled: bool = False
    next_flow_run_id: str | None = None
    scheduled_for: pd.Timestamp | None = None
    resumes: int = 0

    def final_state(self) -> State[Any]:
        return rescheduled_state(
            f"training paused at step {self.result.steps_done} until {self.result.paused_until}; "
            f"flow run {self.next_flow_run_id} resumes it at {self.scheduled_for}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.result.to_dict(),
            "rescheduled": self.rescheduled,
            "next_flow_run_id": self.next_flow_run_id,
            "scheduled_for": None if self.scheduled_for is None else self.scheduled_for.isoformat(),
            "resumes_in_process": self.resumes,
        }


def build_job(job: JobSpec) -> Trainable:
    """A training job (`TrainingJob`, `LightningJob`, `HFTrainerJob`: any `Trainable`), from itself, a factory,
    or an import path ('pkg.mod:factory', 'file.py:factory')."""
    from carbon_sensors.training import Trainable  # torch: only where a flow trains

    made = job
    if isinstance(job, str):
        try:
            made = import_object(job)
        except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
            raise InvalidInputError(
                f"job={job!r} cannot be imported ({exc}); use 'package.module:factory' or 'path/file.py:factory'"
            ) from exc
    if callable(made) and not isinstance(made, Trainable):
        made = made()
    if not isinstance(made, Trainable):
        raise InvalidInputError(
            f"job={job!r} gave {type(made).__name__}, not a TrainingJob, LightningJob or HFTrainerJob "
            "(anything with total_steps() and train(session, resume_from))"
        )
    return made


def build_strategy(
    name: str, source: IntensitySource, zone: str, options: Mapping[str, Any] | None = None
) -> Strategy | None:
    """The named core strategy built with `options`, or None for 'none' (never pause)."""
    if name == "none":
        if options:
            raise InvalidInputError(f"strategy='none' takes no options; got {sorted(options)}")
        return None
    if name not in strategies.STRATEGIES:
        raise InvalidInputError(f"strategy={name!r} is not valid; use one of {list(STRATEGIES)}")
    return strategies.build_strategy(name, source, zone, options)


def strategy_options_for(
    name: str,
    *,
    pause_above: float | None = None,
    resume_below: float | None = None,
    max_pause: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The threshold shortcuts (`pause_above`, `resume_below`, `max_pause`) merged with the other options."""
    shortcuts = {"pause_above": pause_above, "resume_below": resume_below, "max_pause": max_pause}
    given = {k: v for k, v in shortcuts.items() if v is not None}
    if name != "threshold" and given:
        raise InvalidInputError(
            f"{sorted(given)} apply to strategy='threshold' only; pass strategy_options for {name!r}"
        )
    if name == "threshold":
        given.setdefault("max_pause", DEFAULT_MAX_PAUSE)
    return {**given, **option_mapping(extra, "strategy_options")}


def inherited_paused_since() -> str | None:
    """When the pause that rescheduled the runs before this one began (the newest, from their tags), if any."""
    found = tag_times(PAUSED_SINCE_TAG, "paused-since tag")
    return max(found).isoformat() if found else None


def training_deadline(deadline: str | None, within: str | None, now: pd.Timestamp) -> pd.Timestamp:
    """The finish-by time; a run that starts after its given deadline (a rescheduled or retried run that came
    late) keeps it and trains at once (the deadline guard says so), where a wait would refuse it."""
    if deadline is not None and deadline != "" and within is None:
        finish_by = parse_utc(deadline, "deadline")
        if finish_by <= now:
            run_logger().warning(
                "late run: the deadline %s has passed; training at once", finish_by.isoformat()
            )
            return finish_by
    return resolve_deadline(deadline, within, now)


def check_source(source: IntensitySource, zone: str) -> None:
    """Fail now on a bad zone or a refused key, not mid-run; an outage is left to the strategy's fallback."""
    try:
        source.latest(zone)
    except BAD_SETUP:
        raise
    except CarbonAwareError as exc:
        run_logger().warning(
            "carbon data for %s unavailable at start (%s); the strategy's fallback decides", zone, exc
        )


def epoch_rows(result: TrainingResult) -> list[dict[str, Any]]:
    """Per-epoch energy, emissions, mean intensity and sources, from the run's emissions timeline.

    The runner labels the interval that closes epoch k "epoch k"; every interval since the previous label
    belongs to that epoch. A completed run's intervals after its last epoch closed (its ending: the last
    checkpoint, the report) count to that epoch, so the rows add up to the report. Emissions include PUE,
    as in the report.
    """
    if result.timeline_path is None or not Path(result.timeline_path).is_file():
        return []
    ledger = read_jsonl(result.timeline_path)
    intervals = ledger.intervals
    steps = {int(e["epoch"]): int(e["steps"]) for e in result.epochs}
    closing = [k for k, i in enumerate(intervals) if i.label and i.label.startswith("epoch ")]
    rows: list[dict[str, Any]] = []
    first = 0
    for n, close in enumerate(closing):
        ending = n == len(closing) - 1 and result.status == "completed"
        part = intervals[first : len(intervals) if ending else close + 1]
        epoch = int(str(intervals[close].label).split()[1])
        kwh = sum(i.kwh for i in part)
        grams = sum(i.kwh * ledger.pue * i.intensity for i in part)
        rows.append(
            {
                "epoch": epoch,
                "steps": steps.get(epoch),
                "energy_kwh": kwh,
                "emissions_g": grams,
                "avg_intensity": grams / (kwh * ledger.pue) if kwh > 0 else None,
                "intensity_source": ", ".join(sorted({i.intensity_source for i in part})),
            }
        )
        first = close + 1
    return rows


class _ProgressReporter:
    """Update the progress artifact from the session's step counter while training blocks (daemon thread)."""

    def __init__(
        self, session: CarbonSession, epochs: int | None, progress: LiveProgress, every_seconds: float
    ) -> None:
        self.session, self.epochs, self.progress, self.every = session, epochs, progress, every_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="carbon-progress", daemon=True)

    def __enter__(self) -> _ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        self.report()

    def _loop(self) -> None:
        while not self._done.wait(self.every):
            self.report()

    def report(self) -> None:
        total = self.session.total_steps
        if total:
            self.progress.update(100.0 * self.session.steps_done / total)
        elif self.epochs:
            self.progress.update(100.0 * self.session.epoch / self.epochs)


def publish_training_artifacts(outcome: TrainingOutcome, *, zone: str, prefix: str) -> None:
    """The markdown report (the same fields as the Airflow XCom report, and the run's chart) and the
    per-epoch table, under keys of this training (see `carbon_flows.artifacts`)."""
    result = outcome.result
    training = training_id()
    epochs = epoch_rows(result)
    summary = {
        "status": "rescheduled" if outcome.rescheduled else result.status,
        "steps done": result.steps_done,
        "epoch": result.epoch,
        "last loss": result.last_loss,
        "checkpoint": result.checkpoint_path,
        "decision": None if result.decision is None else result.decision.reason,
        "resumes scheduled for": outcome.scheduled_for,
    }
    publish_markdown(
        f"Carbon-aware training report: {zone}",
        summary,
        emissions_rows(result.report.to_dict()),
        key=training_key(prefix, training, "report"),
        description=f"Energy and emissions of carbon-aware training in {zone}",
        chart=run_chart(result.timeline_path, epochs, f"{zone}: intensity while training, energy per epoch"),
    )
    publish_epoch_table(
        epochs, key=training_key(prefix, training, "epochs"), description="Energy and emissions per epoch"
    )


@task(name="carbon-aware-training", cache_policy=NO_CACHE)
def train_carbon_aware(
    job: JobSpec,
    *,
    zone: str,
    checkpoint_dir: str,
    source: SourceSpec = "trace",
    strategy: str | Strategy | None = "threshold",
    options: Mapping[str, Any] | None = None,
    deadline: str | None = None,
    within: str | None = None,
    resume_from: str | None = None,
    paused_since: str | None = None,
    max_in_process_pause: str = "5min",
    pue: float = 1.0,
    artifact_prefix: str = "carbon-training",
    decision_refresh_seconds: float = 30.0,
    progress_every_seconds: float = 2.0,
    expected_duration: str | None = None,
    resume_overhead: str = PREFECT_RESUME_OVERHEAD,
    on_outage: str | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every: str | None = "5min",
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainingOutcome:
    """Train `job` carbon-aware in `zone`; pauses wait in-process or reschedule the deployment (see module).

    Whatever the strategy says, the deadline guard (`carbon_sensors.deadline`) starts training by the deadline
    minus an upper estimate of the work minus `resume_overhead`. Checkpoints go to
    `<checkpoint_dir>/<flow name>/<training id>` (the first flow run's id, handed on to the runs it
    reschedules). Every attempt starts from the newest checkpoint there: a flow retry or a rerun of a crashed
    run resumes where the last periodic checkpoint left off. Cancelling the run (SIGTERM) checkpoints first.

    Args:
        job: a `TrainingJob`, `LightningJob` or `HFTrainerJob` (any `Trainable`), a factory of one, or its
            import path ('package.module:factory', 'file.py:factory').
        zone: the grid zone (e.g. "DE"), as the source names it.
        checkpoint_dir: a local folder or object storage (`s3://bucket/prefix`, fsspec) every worker reaches.
        source: where the carbon data comes from, as for `await_low_carbon` ("trace", the offline default).
        strategy: a name from `STRATEGIES` (built with `options`), a strategy object, or None (never pause).
        options: the named strategy's options (checked against its schema: an unknown one is an error).
        deadline: finish-by time (aware ISO string, grid time); a run that starts after it trains at once.
        within: the deadline as a span from now instead (default 24 h); not both.
        resume_from: a checkpoint to resume from (set by a rescheduled run); default: the newest one there.
        paused_since: when the pause began (set by a rescheduled run), so a threshold strategy's max_pause
            bound holds across runs.
        max_in_process_pause: a pause up to this long waits in-process ('5min'); a longer one in a deployment
            run schedules a new run for the resume time and this run ends "Rescheduled".
        pue: the data centre's power usage effectiveness, in [1, 5] (default 1): measured energy times this.
        artifact_prefix: the key prefix of the report, epoch table and progress artifacts.
        decision_refresh_seconds: grid seconds a strategy decision is reused for (default 30).
        progress_every_seconds: wall seconds between updates of the progress artifact (default 2).
        expected_duration: how long the whole training runs ('3h'), for a data loader without len() and
            without max_steps; without it such a job is assumed to need all the time to the deadline.
        resume_overhead: wall time from a rescheduled run's start to its first step (worker poll, process
            start, flow load; default 30 s), kept as a margin before the deadline.
        on_outage: without carbon data, 'open' trains on and 'closed' pauses (bounded by max_pause and the
            deadline); default: the strategy's own `on_error` (open). Built-in strategies only.
        checkpoint_every_steps: also checkpoint every this many steps.
        checkpoint_every: wall time between periodic checkpoints ('5min'; None: only at pauses, stops and the
            end); a lost worker costs at most this much training.
        mlflow_tracking_uri: log emissions per epoch, the report and the timeline to this MLflow store (the
            `mlflow` extra), one MLflow run per training across rescheduled runs.
        mlflow_experiment: the MLflow experiment of those runs; default the flow's name.
        sleep: how an in-process pause sleeps (tests pass a recorder).
    """
    log = run_logger()
    training = build_job(job)
    intensity_source = resolve_source(source)
    clock = clock_of(intensity_source)
    finish_by = training_deadline(deadline, within, clock.now())
    chosen = (
        build_strategy(strategy, intensity_source, zone, strategies.with_outage_policy(options, on_outage))
        if isinstance(strategy, str)
        else strategy
    )
    overhead = resume_margin(resume_overhead, clock)
    work = None if expected_duration is None else parse_duration(expected_duration, "expected_duration")
    check_source(intensity_source, zone)
    since = paused_since or inherited_paused_since()
    if since is not None and chosen is not None and hasattr(chosen, "paused_since"):
        chosen.paused_since = parse_utc(since, "paused_since")  # its hold clock survives the reschedule
    in_process_limit = parse_duration(max_in_process_pause, "max_in_process_pause")
    progress = LiveProgress(
        key=training_key(artifact_prefix, training_id(), "progress"),
        description=f"Carbon-aware training in {zone}",
    )

    store = CheckpointStore(checkpoint_dir, _run_key())
    every = None if checkpoint_every is None else parse_duration(checkpoint_every, "checkpoint_every")

    def attempt(checkpoint: str | None) -> TrainingResult:
        from carbon_sensors.training import CarbonSession  # torch: only where a flow trains
        from carbon_sensors.training.session import settings_on_clock

        settings = settings_on_clock(
            clock,
            checkpoint_every_steps=checkpoint_every_steps,
            checkpoint_every=every,
            on_checkpoint=store.on_checkpoint,
            strategy=chosen,
            zone=zone,
            intensity_source=intensity_source,
            deadline=finish_by,
            decision_refresh_seconds=decision_refresh_seconds,
            pue=pue,
            expected_duration=work,
            resume_overhead=overhead,
            listeners=_listeners(mlflow_tracking_uri, mlflow_experiment),
        )
        session = CarbonSession(store.local_dir, settings, total_steps=training.total_steps())
        start = store.resume_point(checkpoint)
        epochs = getattr(training, "epochs", None)
        try:
            with _ProgressReporter(
                session, epochs if isinstance(epochs, int) else None, progress, progress_every_seconds
            ):
                result = training.train(session, start)
        finally:
            session.close()
        if result.started_at_step:
            log.info("resumed from the checkpoint at step %d", result.started_at_step)
        log.info(
            "training %s at step %d: %s",
            result.status,
            result.steps_done,
            report_summary(result.report.to_dict()),
        )
        if result.checkpoint_path is not None:
            result.checkpoint_path = store.published(result.checkpoint_path)
        return result

    result = attempt(resume_from)
    resumes = 0
    while result.status == "paused":
        assert result.paused_until is not None and result.checkpoint_path is not None
        events.emit_carbon_event(events.PAUSE_STARTED, zone, result.to_dict())
        resume_wall = clock.to_wall(result.paused_until)
        wait = max(0.0, (resume_wall - utcnow()).total_seconds())
        if wait > in_process_limit.total_seconds() and current_deployment_run() is not None:
            since = getattr(chosen, "paused_since", None)
            held_since = None if since is None else pd.Timestamp(since).isoformat()
            next_run = reschedule_current_run(
                resume_wall,
                parameter_overrides={
                    "resume_from": result.checkpoint_path,
                    "deadline": finish_by.isoformat(),
                    "paused_since": held_since,
                },
                # as tags too, for a user's flow that declares no such parameters
                extra_tags=[
                    f"{TRAINING_TAG}{training_id()}",
                    f"{DEADLINE_TAG}{finish_by.isoformat()}",
                    *([] if held_since is None else [f"{PAUSED_SINCE_TAG}{held_since}"]),
                ],
            )
            outcome = TrainingOutcome(result, True, str(next_run.id), resume_wall, resumes)
            log.info("%s", outcome.final_state().message)
            publish_training_artifacts(outcome, zone=zone, prefix=artifact_prefix)
            return outcome
        log.info("training paused at step %d: waiting %.1f s in process", result.steps_done, wait)
        sleep(wait)
        result = attempt(result.checkpoint_path)
        resumes += 1
    outcome = TrainingOutcome(result, resumes=resumes)
    events.emit_carbon_event(events.RUN_ENDED, zone, result.to_dict())
    progress.update(100.0 if result.status == "completed" else progress.percent, description=result.status)
    publish_training_artifacts(outcome, zone=zone, prefix=artifact_prefix)
    return outcome


def _listeners(tracking_uri: str | None, experiment: str | None) -> list[SessionListener]:
    """MLflow tracking when a tracking URI is given: one MLflow run per training (its run key)."""
    if tracking_uri is None:
        return []
    from carbon_sensors.integrations.mlflow import MlflowListener

    ctx = FlowRunContext.get()
    flow_name = ctx.flow.name if ctx is not None and ctx.flow is not None else "carbon-aware-training"
    return [
        MlflowListener(tracking_uri=tracking_uri, experiment=experiment or flow_name, job=_run_key() or None)
    ]


def _run_key() -> str:
    """`<flow name>/<training id>` inside a flow run (its retries and reruns share it); outside one, ""."""
    ctx = FlowRunContext.get()
    lineage = training_id()
    if ctx is None or ctx.flow_run is None or lineage is None:
        return ""
    return run_key(flow=ctx.flow.name if ctx.flow is not None else "flow", training=lineage)


@flow(name="carbon-aware-training")
def carbon_aware_training(
    job: str,
    zone: str = "DE",
    checkpoint_dir: str = "checkpoints",
    source: str = "trace",
    strategy: Literal["none", "threshold", "adaptive", "forecast-window"] = "threshold",
    pause_above: float | None = None,
    resume_below: float | None = None,
    max_pause: str | None = None,
    strategy_options: dict[str, Any] | None = None,
    deadline: str | None = None,
    within: str = "24h",
    expected_duration: str | None = None,
    resume_from: str | None = None,
    paused_since: str | None = None,
    max_in_process_pause: str = "5min",
    pue: float = 1.0,
    decision_refresh_seconds: float = 30.0,
    artifact_prefix: str = "carbon-training",
    on_outage: Literal["open", "closed"] | None = None,
    resume_overhead: str = PREFECT_RESUME_OVERHEAD,
    allowed_jobs: list[str] | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every: str | None = "5min",
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment: str | None = None,
) -> dict[str, Any] | State[Any]:
    """Wait for a window for `expected_duration` (if given, on a fresh start), then train carbon-aware.

    The deployable face of `wait_for_low_carbon` and `train_carbon_aware`: the options the Prefect UI shows
    are documented here. A rescheduled run gets the absolute deadline, the checkpoint and the pause clock as
    parameters.

    Args:
        job: import path of a function returning a `TrainingJob`, `LightningJob` or `HFTrainerJob`
            ('package.module:factory' or 'file.py:factory'); in a deployment run it must be the deployment's
            `job` or one of its `allowed_jobs` (see `carbon_flows.jobs`), else it fails before it is imported.
        zone: the grid zone (e.g. "DE").
        checkpoint_dir: a local folder or object storage (`s3://bucket/prefix`) every worker reaches.
        source: where the carbon data comes from: "trace" (recorded, the offline default), a provider name
            ("uk", "electricitymaps", "watttime") or a credentials block ("watttime-credentials/<name>").
        strategy: when to pause: 'none', 'threshold' (default), 'adaptive' or 'forecast-window'.
        pause_above: 'threshold' only: pause above this many gCO2eq/kWh.
        resume_below: 'threshold' only: resume at or below this many gCO2eq/kWh.
        max_pause: 'threshold' only: the longest pause ('6h', the default).
        strategy_options: any strategy's keyword arguments, e.g. {"percentile": 30, "days": 7} for 'adaptive'.
        deadline: finish-by time (aware ISO string, grid time); wins over `within`.
        within: the deadline as a span from the first run's start ('24h').
        expected_duration: how long the training runs ('3h'): on a fresh start, first wait for the greenest
            window that long (planned at the deadline guard's upper estimate, 1.1x, so a run slower than
            expected still finishes in time; wall time, as the guard reads it, so under a replay it is that
            many grid hours times the speed); it also sizes a job whose data loader has no len().
        resume_from: a checkpoint to resume from (set by a rescheduled run).
        paused_since: when the pause began (set by a rescheduled run).
        max_in_process_pause: a wait or pause up to this long happens in-process ('5min'); a longer one
            reschedules the deployment.
        pue: the data centre's power usage effectiveness, in [1, 5] (default 1).
        decision_refresh_seconds: grid seconds a strategy decision is reused for (default 30).
        artifact_prefix: the key prefix of the report, epoch table and progress artifacts.
        on_outage: without carbon data, 'open' trains on and 'closed' pauses (bounded by max_pause and the
            deadline); default: the strategy's own.
        resume_overhead: wall time from a rescheduled run's start to its first step (default 30 s), kept as a
            margin before the deadline.
        allowed_jobs: job paths a run may train besides `job`; in a deployment run the deployment's stored list
            counts, not the run's.
        checkpoint_every_steps: also checkpoint every this many steps.
        checkpoint_every: wall time between periodic checkpoints ('5min'; None: only at pauses, stops and the
            end); a lost worker costs at most this much training.
        mlflow_tracking_uri: log emissions to this MLflow tracking store (the `mlflow` extra).
        mlflow_experiment: the MLflow experiment; default the flow's name.
    """
    require_allowed_job(job, allowed_jobs)
    options = strategy_options_for(
        strategy,
        pause_above=pause_above,
        resume_below=resume_below,
        max_pause=max_pause,
        extra=strategy_options,
    )
    finish_by = deadline
    if resume_from is None and expected_duration is not None:
        # the work at the guard's upper estimate, in grid time as the guard counts it (a replay runs faster)
        upper = upper_work(parse_duration(expected_duration, "expected_duration"))
        window = wait_for_low_carbon(
            zone,
            duration=clock_of(resolve_source(source)).grid_duration(upper),
            deadline=deadline,
            within=None if deadline else within,
            source=source,
            max_in_process_wait=max_in_process_pause,
            resume_overhead=resume_overhead,
        )
        if window.rescheduled:
            return window.final_state()
        finish_by = window.deadline.isoformat()
    outcome = train_carbon_aware(
        job,
        zone=zone,
        checkpoint_dir=checkpoint_dir,
        source=source,
        strategy=strategy,
        options=options,
        deadline=finish_by,
        within=None if finish_by else within,
        resume_from=resume_from,
        paused_since=paused_since,
        max_in_process_pause=max_in_process_pause,
        pue=pue,
        decision_refresh_seconds=decision_refresh_seconds,
        artifact_prefix=artifact_prefix,
        expected_duration=expected_duration,
        on_outage=on_outage,
        resume_overhead=resume_overhead,
        checkpoint_every_steps=checkpoint_every_steps,
        checkpoint_every=checkpoint_every,
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment=mlflow_experiment,
    )
    return outcome.final_state() if outcome.rescheduled else outcome.to_dict()
