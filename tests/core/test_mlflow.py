"""MlflowListener against a real local tracking store (sqlite, artifacts on disk): what a job logs, read back."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from training_models import START, FakeClock, PauseAtSteps, build_job

from carbon_sensors.emissions import read_jsonl
from carbon_sensors.integrations.mlflow import RUN_FILE, MlflowListener
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.training import TrainingResult, TrainingRunner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite tracking store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def experiment(store: str, tmp_path: Path, name: str) -> str:
    """An experiment whose artifacts lie under tmp_path (never in the working directory)."""
    return MlflowClient(store).create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())


def train(
    ckpt: Path, listener: MlflowListener, clock: FakeClock, strategy: PauseAtSteps, resume_from: str | None
) -> TrainingResult:
    """One attempt in a fresh runner (as a fresh process would), on the recorded German trace."""
    runner = TrainingRunner(
        build_job(1), checkpoint_dir=ckpt, strategy=strategy, zone="DE", intensity_source=TraceProvider(),
        clock=clock, monitor=PowerMonitor([EstimateMeter()], start=False), decision_refresh_seconds=0,
        estimated_step_seconds=60.0, listeners=[listener],
    )  # fmt: skip
    strategy.progress = lambda: runner.steps_done
    return runner.run(resume_from=resume_from)


def paused_then_completed(
    ckpt: Path, listener: Any, clock: FakeClock, between: Any = None
) -> tuple[TrainingResult, TrainingResult]:
    """Pause mid-epoch 1 (step 12) for an hour, then resume from the checkpoint with a new listener."""
    strategy = PauseAtSteps({12})
    paused = train(ckpt, listener(), clock, strategy, None)
    assert (paused.status, paused.steps_done) == ("paused", 12) and paused.paused_until is not None
    if between is not None:
        between(paused)
    clock.now = paused.paused_until + timedelta(minutes=1)
    done = train(ckpt, listener(), clock, strategy, paused.checkpoint_path)
    assert (done.status, done.steps_done) == ("completed", 24)
    return paused, done


def history(client: MlflowClient, run: Run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def check_logged(
    client: MlflowClient, run: Run, paused: TrainingResult, done: TrainingResult, tmp: Path
) -> None:
    """Every epoch once (energy, emissions, steps), the report of each attempt, params, tags, artifacts."""
    epochs = done.epochs
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    energy = history(client, run, "carbon/epoch/energy_kwh")
    assert [s for s, _ in energy] == [0, 1, 2]
    assert [v for _, v in energy] == pytest.approx([e["joules"] / 3.6e6 for e in epochs], rel=1e-12)
    assert history(client, run, "carbon/epoch/steps") == [(0, 8.0), (1, 8.0), (2, 8.0)]
    timeline = Path(str(done.timeline_path))
    ledger = read_jsonl(timeline)
    ends = [next(i.end for i in ledger.intervals if i.label == f"epoch {n}") for n in (0, 1, 2)]
    bounds = list(zip([ledger.submitted_at, *ends[:-1]], ends, strict=True))
    grams = [
        sum(i.kwh * i.intensity for i in ledger.intervals if lo < i.end <= hi) for lo, hi in bounds
    ]  # the intervals that ended in each epoch (PUE 1)
    emissions = history(client, run, "carbon/epoch/emissions_g")
    assert [s for s, _ in emissions] == [0, 1, 2]
    assert [v for _, v in emissions] == pytest.approx(grams, rel=1e-12)
    assert all(v > 0 for _, v in emissions)  # the recorded German grid: real intensities
    report, until = done.report, paused.paused_until
    assert until is not None
    assert report.pauses == 1 and report.attempts == 2 and report.emissions_g > 0
    # epoch 1 spans the pause: it holds intervals of both attempts
    assert any(i.end <= until for i in ledger.intervals if bounds[1][0] < i.end <= bounds[1][1])
    assert any(i.start >= until for i in ledger.intervals if bounds[1][0] < i.end <= bounds[1][1])
    # the epochs and what came after the last (the final checkpoint's window) make up the report
    after = sum(i.kwh * i.intensity for i in ledger.intervals if i.end > ends[-1])
    assert sum(v for _, v in emissions) + after == pytest.approx(report.emissions_g, rel=1e-9)
    # the report at the end of each attempt, at step = steps done; the last one is the final report
    final = history(client, run, "carbon/emissions_g")
    assert [s for s, _ in final] == [12, 24]
    assert [v for _, v in final] == pytest.approx([paused.report.emissions_g, report.emissions_g])
    metrics = run.data.metrics
    for key in ("energy_kwh", "energy_kwh_with_pue", "run_now_emissions_g", "avoided_g", "paused_seconds"):
        assert metrics[f"carbon/{key}"] == pytest.approx(getattr(report, key), rel=1e-12)
    assert (
        metrics["carbon/pauses"] == 1
        and metrics["carbon/attempts"] == 2
        and metrics["carbon/steps_done"] == 24
    )
    assert run.data.params == {"carbon/zone": "DE", "carbon/pue": "1.0"}
    assert run.data.tags["carbon/status"] == "completed" and run.data.tags["carbon/paused_until"] == ""
    # the timeline artifact is the run's timeline, byte for byte, and recomputes the report
    got = Path(client.download_artifacts(run.info.run_id, "carbon/emissions.jsonl", str(tmp)))
    assert got.read_bytes() == timeline.read_bytes()
    assert read_jsonl(got).report().to_dict() == report.to_dict()
    result = Path(client.download_artifacts(run.info.run_id, "carbon/result.json", str(tmp)))
    assert json.loads(result.read_text())["report"] == json.loads(json.dumps(report.to_dict()))


@pytest.mark.parametrize("live", [True, False], ids=["epochs-live", "epochs-at-attempt-end"])
def test_a_paused_and_resumed_job_logs_one_run_with_every_epoch_and_the_timeline(
    store: str, tmp_path: Path, live: bool
) -> None:
    exp = experiment(store, tmp_path, f"tiny-{live}")
    ckpt = tmp_path / "ckpt"
    client = MlflowClient(store)
    statuses: list[str] = []

    def listener() -> MlflowListener:
        return MlflowListener(
            checkpoint_dir=ckpt if live else None,
            tracking_uri=store,
            experiment=f"tiny-{live}",
            run_name="tiny",
        )

    def during_pause(paused: TrainingResult) -> None:
        (run,) = client.search_runs([exp])
        statuses.append(run.info.status)
        if live:  # epochs 0 was logged as it ended; epoch 1 has not ended
            assert [s for s, _ in history(client, run, "carbon/epoch/energy_kwh")] == [0]

    paused, done = paused_then_completed(ckpt, listener, FakeClock(tick=timedelta(seconds=20)), during_pause)

    (run,) = client.search_runs([exp])  # the resumed attempt went on in the same run
    assert statuses == ["SCHEDULED"] and run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert json.loads((ckpt / RUN_FILE).read_text())["run_id"] == run.info.run_id
    check_logged(client, run, paused, done, tmp_path / "download")


def test_the_users_active_run_is_logged_to_and_continued_after_it_ended(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    exp = experiment(store, tmp_path, "users")
    ckpt = tmp_path / "ckpt"
    client = MlflowClient(store)
    clock = FakeClock(tick=timedelta(seconds=20))
    with mlflow.start_run(experiment_id=exp, run_name="mine") as mine:
        strategy = PauseAtSteps({12})
        paused = train(ckpt, MlflowListener(), clock, strategy, None)
        assert paused.status == "paused"
        # the listener leaves the status of the user's run alone
        assert client.get_run(mine.info.run_id).info.status == "RUNNING"
    assert paused.paused_until is not None
    clock.now = paused.paused_until + timedelta(minutes=1)
    done = train(ckpt, MlflowListener(checkpoint_dir=ckpt), clock, strategy, paused.checkpoint_path)

    (run,) = client.search_runs([exp])  # no run of its own: the resumed attempt logs to the user's run
    assert run.info.run_id == mine.info.run_id and run.info.status == "FINISHED"
    check_logged(client, run, paused, done, tmp_path / "download")


def test_a_fresh_start_in_the_same_folder_logs_a_new_run(store: str, tmp_path: Path) -> None:
    exp = experiment(store, tmp_path, "twice")
    ckpt = tmp_path / "ckpt"
    for day in (0, 1):  # a new job: a new timeline, submitted another day
        clock = FakeClock(START + timedelta(days=day), tick=timedelta(seconds=20))
        listener = MlflowListener(checkpoint_dir=ckpt, tracking_uri=store, experiment="twice")
        assert train(ckpt, listener, clock, PauseAtSteps(set()), None).status == "completed"
    runs = MlflowClient(store).search_runs([exp])
    assert len(runs) == 2 and len({r.info.run_id for r in runs}) == 2
    assert json.loads((ckpt / RUN_FILE).read_text())["run_id"] == listener.run_id


def test_without_mlflow_the_import_error_names_the_extra() -> None:
    code = "import sys; sys.modules['mlflow'] = None; import carbon_sensors.integrations.mlflow"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "pip install 'carbon-aware-trainer[mlflow]'" in done.stderr
