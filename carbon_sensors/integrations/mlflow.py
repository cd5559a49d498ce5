"""MLflow tracking for carbon-aware training: emissions per epoch, the final report and the timeline.

Add `MlflowListener()` to a session's `listeners` (any face: `TrainingRunner`, `carbon_session`, the
Lightning and Hugging Face callbacks, the Airflow operator, the Prefect flow). It logs to the active MLflow
run when there is one, else to a run of its own; a paused job resumed later (another process, a deferred
Airflow task) goes on in the same MLflow run, whose id is kept in `mlflow-run.json` beside the timeline.

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    with mlflow.start_run():
        TrainingRunner(job, checkpoint_dir="ckpt", listeners=[MlflowListener()]).run()

Metrics keep full precision (kWh, gCO2eq, seconds): `carbon/epoch/*` at step = epoch, the report's
`carbon/*` at step = steps done; zone and PUE are params, the status a tag (it changes at each attempt).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "carbon_sensors.integrations.mlflow needs MLflow: "
        "pip install 'carbon-aware-trainer[mlflow]' (or mlflow-skinny)"
    ) from exc

from carbon_sensors.atomic import atomic_write_text
from carbon_sensors.emissions import JOULES_PER_KWH, EmissionsLedger, read_jsonl
from carbon_sensors.errors import TraceError
from carbon_sensors.training.job import TrainingResult
from carbon_sensors.training.session import TIMELINE_NAME, CarbonSession

log = logging.getLogger(__name__)

RUN_FILE = "mlflow-run.json"
"""Beside the timeline: which MLflow run this job logs to, so every attempt continues it."""
PREFIX = "carbon/"
ARTIFACT_DIR = "carbon"
EPOCH_KEYS = ("energy_kwh", "emissions_g", "seconds", "steps", "loss")
REPORT_METRICS = (
    "energy_kwh", "energy_kwh_with_pue", "emissions_g", "run_now_emissions_g", "avoided_g", "avg_intensity",
    "active_seconds", "paused_seconds", "pauses", "intervals", "attempts", "crashed_attempts",
)  # fmt: skip
# MLflow's run status for each way an attempt ends (a paused run is scheduled to go on)
RUN_STATUS = {"paused": "SCHEDULED", "stopped": "KILLED", "completed": "FINISHED"}


class MlflowListener:
    """A `SessionListener` that logs a training job's emissions to MLflow (see the module docstring).

    :param checkpoint_dir: the session's checkpoint folder; given, epochs are logged as they end (with their
        emissions) in every attempt, else all at the attempt's end (the folder is learnt from the result).
    :param tracking_uri: where to log (default: MLflow's, e.g. `MLFLOW_TRACKING_URI`).
    :param experiment: the experiment name of a run this listener starts (created when missing; default
        MLflow's: `MLFLOW_EXPERIMENT_NAME` / `MLFLOW_EXPERIMENT_ID`, else "Default").
    :param run_name: the name of a run this listener starts.
    :param run_id: log to this existing run (instead of the active run or one of its own).
    :param job: a name for the training job across attempts and workers (the faces give their run key): a
        run this listener starts is tagged `carbon/job`, and a later attempt without `mlflow-run.json`
        (another worker) finds the run by that tag.
    """

    def __init__(
        self,
        *,
        checkpoint_dir: str | Path | None = None,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        run_id: str | None = None,
        job: str | None = None,
    ) -> None:
        self.job = job
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self._given_run_id = run_id
        self._client: MlflowClient | None = None
        self._run: tuple[str, bool] | None = None  # (run id, started by this listener)
        self._attempt_logged = False

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self._uri())
        return self._client

    @property
    def run_id(self) -> str | None:
        """The MLflow run logged to (None before the first log)."""
        return None if self._run is None else self._run[0]

    # --- SessionListener ---------------------------------------------------------------------------------
    def session_began(self, session: CarbonSession) -> None:
        """Learn the session's folder, so each epoch is logged live with its emissions."""
        if self.checkpoint_dir is None:
            self.checkpoint_dir = session.checkpoint_dir

    def epoch_ended(self, epoch: dict[str, Any]) -> None:
        """Log the epoch's energy (and emissions, when the timeline is known) at step = epoch."""
        folder = self.checkpoint_dir
        if folder is None and self._active_run_id() is None and self._given_run_id is None:
            return  # no run to log to yet: session_ended logs every epoch
        run_id, _ = self._resolve(folder)
        ledger = None if folder is None else _read_timeline(folder / TIMELINE_NAME)
        emissions = {} if ledger is None else epoch_emissions(ledger)
        self._log(run_id, _epoch_metrics(epoch, emissions.get(int(epoch["epoch"]))))

    def session_ended(self, result: TrainingResult) -> None:
        """Log what the attempt's epochs still lack, the report, the timeline and report artifacts."""
        timeline = Path(result.timeline_path) if result.timeline_path else None
        folder = self.checkpoint_dir or (None if timeline is None else timeline.parent)
        run_id, owned = self._resolve(folder)
        ledger = None if timeline is None else _read_timeline(timeline)
        self._log_missing_epochs(run_id, result.epochs, {} if ledger is None else epoch_emissions(ledger))
        report = result.report.to_dict()
        values = {k: report[k] for k in REPORT_METRICS if report[k] is not None}
        values |= {"steps_done": result.steps_done, "epochs": len(result.epochs)}
        metrics = [(key, float(value), result.steps_done) for key, value in values.items()]
        params = {"zone": report["zone"] or "none", "pue": report["pue"]}
        tags = {
            "status": result.status,
            "paused_until": "" if result.paused_until is None else result.paused_until.isoformat(),
            "kind": report["kind"] or "",
            "intensity_sources": ",".join(report["intensity_sources"]),
            "power_sources": ",".join(report["power_sources"]),
        }
        self._log(run_id, metrics, params=params, tags=tags)
        if timeline is not None and timeline.is_file():
            self.client.log_artifact(run_id, str(timeline), artifact_path=ARTIFACT_DIR)
        self.client.log_dict(run_id, result.to_dict(), f"{ARTIFACT_DIR}/result.json")
        if owned:
            status = RUN_STATUS.get(result.status, "FINISHED")
            if status == "SCHEDULED":
                self.client.update_run(run_id, status=status)
            else:
                self.client.set_terminated(run_id, status=status)
        self._attempt_logged = False
        log.info("MLflow run %s: %s (%s)", run_id, result.status, self._uri())

    # --- which run ---------------------------------------------------------------------------------------
    def _uri(self) -> str:
        return self.tracking_uri if self.tracking_uri is not None else mlflow.get_tracking_uri()

    def _active_run_id(self) -> str | None:
        active = mlflow.active_run()
        if active is None or (
            self.tracking_uri is not None and self.tracking_uri != mlflow.get_tracking_uri()
        ):
            return None
        return str(active.info.run_id)

    def _resolve(self, folder: Path | None) -> tuple[str, bool]:
        """The run to log to: the active run, the given one, this job's earlier one, or a new one."""
        active = self._active_run_id()
        if active is not None:
            self._run = (active, False)
        elif self._given_run_id is not None:
            self._run = (self._given_run_id, False)
        elif self._run is None:
            self._run = self._earlier_run(folder) or self._run_of_job() or (self._start_run(), True)
        if self._run[1] and not self._attempt_logged:
            self.client.update_run(self._run[0], status="RUNNING")  # resumed: no longer scheduled
        self._attempt_logged = True
        if folder is not None:
            self._remember(folder, *self._run)
        return self._run

    def _earlier_run(self, folder: Path | None) -> tuple[str, bool] | None:
        """The run of this job's earlier attempts, from `RUN_FILE` (when it belongs to this timeline)."""
        if folder is None or not (folder / RUN_FILE).is_file():
            return None
        try:
            saved = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
            run_id, owned, job = str(saved["run_id"]), bool(saved["owned"]), saved.get("job")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s cannot be read (%s): logging to a new MLflow run", folder / RUN_FILE, exc)
            return None
        if job != _job_key(folder):
            return None  # a file of an earlier job in this folder (a fresh start has a new timeline)
        try:
            self.client.get_run(run_id)
        except MlflowException as exc:
            log.warning("MLflow run %s of %s is not in %s (%s): logging to a new run", run_id,
                        folder / RUN_FILE, self._uri(), exc.message)  # fmt: skip
            return None
        return run_id, owned

    def _run_of_job(self) -> tuple[str, bool] | None:
        """The unfinished run this listener started for `job` in an earlier attempt (on any worker)."""
        if (
            self.job is None or "'" in self.job
        ):  # the faces' run keys are sanitised; a quote cannot be searched
            return None
        found = self.client.search_runs(
            [self._experiment_id()],
            filter_string=f"tags.`{PREFIX}job` = '{self.job}' and attributes.status != 'FINISHED'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return (str(found[0].info.run_id), True) if found else None

    def _start_run(self) -> str:
        experiment_id = self._experiment_id()
        tags = {f"{PREFIX}listener": "1"} | ({} if self.job is None else {f"{PREFIX}job": self.job})
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        log.info("MLflow run %s started in experiment %s (%s)", run.info.run_id, experiment_id, self._uri())
        return str(run.info.run_id)

    def _experiment_id(self) -> str:
        name = self.experiment if self.experiment is not None else os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if name is None:
            return str(os.environ.get("MLFLOW_EXPERIMENT_ID") or "0")
        found = self.client.get_experiment_by_name(name)
        return str(found.experiment_id) if found is not None else str(self.client.create_experiment(name))

    def _remember(self, folder: Path, run_id: str, owned: bool) -> None:
        record = {"run_id": run_id, "owned": owned, "tracking_uri": self._uri(), "job": _job_key(folder)}
        path = folder / RUN_FILE
        text = json.dumps(record, sort_keys=True) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)

    # --- logging -----------------------------------------------------------------------------------------
    def _log(
        self,
        run_id: str,
        metrics: Iterable[tuple[str, float, int]],
        *,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(PREFIX + key, value, now, step) for key, value, step in metrics],
            params=[Param(PREFIX + k, str(v)) for k, v in (params or {}).items()],
            tags=[RunTag(PREFIX + k, v) for k, v in (tags or {}).items()],
        )

    def _log_missing_epochs(
        self, run_id: str, epochs: Iterable[dict[str, Any]], emissions: dict[int, float]
    ) -> None:
        """Epochs not logged yet (no run was known then, or the timeline was not): logged now, once."""
        logged = {
            key: {m.step for m in self.client.get_metric_history(run_id, f"{PREFIX}{key}")}
            for key in (f"epoch/{name}" for name in EPOCH_KEYS)
        }
        missing = [
            (key, value, step)
            for epoch in epochs
            for key, value, step in _epoch_metrics(epoch, emissions.get(int(epoch["epoch"])))
            if step not in logged[key]
        ]
        if missing:
            self._log(run_id, missing)


def epoch_emissions(ledger: EmissionsLedger) -> dict[int, float]:
    """gCO2eq per epoch from the timeline: the intervals up to and with each "epoch N" interval, in order.

    The session closes an epoch with an interval labelled "epoch N"; the intervals since the one before
    (every attempt's, a pause between) are that epoch's.
    """
    found: dict[int, float] = {}
    grams = 0.0
    for interval in sorted(ledger.intervals, key=lambda i: (i.start, i.end)):
        grams += interval.kwh * ledger.pue * interval.intensity
        label = interval.label or ""
        if label.startswith("epoch ") and label[6:].isdigit():
            found[int(label[6:])] = grams
            grams = 0.0
    return found


def _epoch_metrics(epoch: dict[str, Any], emissions_g: float | None) -> list[tuple[str, float, int]]:
    """The epoch record's numbers as (key, value, step = epoch); emissions when the timeline gave them."""
    number = int(epoch["epoch"])
    values: dict[str, Any] = {
        "energy_kwh": float(epoch.get("joules", 0.0)) / JOULES_PER_KWH,
        "emissions_g": emissions_g,
        "seconds": epoch.get("seconds"),
        "steps": epoch.get("steps"),
        "loss": epoch.get("loss"),
    }
    return [(f"epoch/{k}", float(v), number) for k, v in values.items() if isinstance(v, int | float)]


def _read_timeline(path: Path) -> EmissionsLedger | None:
    if not path.is_file():
        return None
    try:
        return read_jsonl(path)
    except TraceError as exc:
        log.warning("emissions timeline %s cannot be read for MLflow (%s)", path, exc)
        return None


def _job_key(folder: Path) -> str | None:
    """The job a timeline belongs to: its header's submission time (a fresh start writes a new one)."""
    try:
        with (folder / TIMELINE_NAME).open(encoding="utf-8") as fh:
            header = json.loads(fh.readline())
    except (OSError, ValueError):
        return None
    return None if not isinstance(header, dict) else str(header.get("submitted_at"))
