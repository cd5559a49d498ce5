"""A paused-and-resumed run reaches bitwise the same parameters as an uninterrupted one (CPU)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from training_models import START, FakeClock, PauseAtSteps, build_job, parameters, seed_everything

from carbon_sensors.emissions import read_jsonl
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.training import TrainingJob, TrainingRunner


@pytest.fixture
def monitor() -> PowerMonitor:
    return PowerMonitor([EstimateMeter()], start=False)


def reference_run(tmp_path: Path, monitor: PowerMonitor, **job_kw: bool) -> list[torch.Tensor]:
    job = build_job(1, **job_kw)
    seed_everything(123)
    result = TrainingRunner(job, checkpoint_dir=tmp_path / "ref", monitor=monitor, clock=FakeClock()).run()
    assert result.status == "completed" and result.steps_done == 24
    return parameters(job)


@pytest.mark.parametrize(
    "job_kw",
    [{}, {"loader_generator": True}, {"noisy": True}],
    ids=["global-rng-shuffle", "loader-generator", "random-augmentation"],
)
def test_three_pauses_and_fresh_resumes_match_an_uninterrupted_run_bitwise(
    tmp_path: Path, monitor: PowerMonitor, job_kw: dict[str, bool]
) -> None:
    expected = reference_run(tmp_path, monitor, **job_kw)

    clock = FakeClock()
    strategy = PauseAtSteps({5, 8, 17})  # mid-epoch 0, the epoch 0/1 boundary, mid-epoch 2
    ckpt = tmp_path / "ckpt"
    job = build_job(1, **job_kw)
    seed_everything(123)
    runner = TrainingRunner(
        job, checkpoint_dir=ckpt, strategy=strategy, zone=None, clock=clock, monitor=monitor,
        decision_refresh_seconds=0, estimated_step_seconds=1.0,
    )  # fmt: skip
    strategy.progress = lambda: runner.steps_done
    result = runner.run()
    statuses = [(result.status, result.steps_done)]
    while result.status == "paused":
        assert result.paused_until is not None and result.checkpoint_path is not None
        json.dumps(result.to_dict())  # small and JSON-able at every stage
        clock.now = result.paused_until + timedelta(minutes=1)
        job = build_job(999, **job_kw)  # a fresh process: other initial weights, other RNG state
        seed_everything(777)
        runner = TrainingRunner(
            job, checkpoint_dir=ckpt, strategy=strategy, clock=clock, monitor=monitor,
            decision_refresh_seconds=0, estimated_step_seconds=1.0,
        )  # fmt: skip
        strategy.progress = lambda r=runner: r.steps_done  # type: ignore[misc]
        result = runner.run(resume_from=result.checkpoint_path)
        statuses.append((result.status, result.steps_done))

    assert statuses == [("paused", 5), ("paused", 8), ("paused", 17), ("completed", 24)]
    for got, want in zip(parameters(job), expected, strict=True):
        assert torch.equal(got, want)
    report = result.report
    assert report.pauses == 3
    assert report.paused_seconds == pytest.approx(3 * 61 * 60)
    assert report.submitted_at == START
    assert [e["epoch"] for e in result.epochs] == [0, 1, 2]
    assert sum(e["steps"] for e in result.epochs) == 24
    # the JSONL timeline written along the way recomputes the same report
    assert read_jsonl(ckpt / "emissions.jsonl").report().to_dict() == report.to_dict()


def test_uninterrupted_runs_differ_with_another_seed(tmp_path: Path, monitor: PowerMonitor) -> None:
    """Guards the test above: the comparison is sensitive to the RNG state."""
    expected = reference_run(tmp_path, monitor)
    job = build_job(1)
    seed_everything(124)
    TrainingRunner(job, checkpoint_dir=tmp_path / "other", monitor=monitor, clock=FakeClock()).run()
    assert not all(torch.equal(a, b) for a, b in zip(parameters(job), expected, strict=True))


def test_stop_checkpoints_and_resume_completes_identically(tmp_path: Path, monitor: PowerMonitor) -> None:
    expected = reference_run(tmp_path, monitor)
    job = build_job(1)
    seed_everything(123)
    runner: TrainingRunner | None = None
    inner = job.loss_fn
    assert inner is not None

    def loss_and_stop(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        assert runner is not None
        if runner.steps_done == 10:
            runner.stop()  # as Airflow's on_kill would, from another thread
        return inner(outputs, targets)

    job.loss_fn = loss_and_stop
    runner = TrainingRunner(job, checkpoint_dir=tmp_path / "ckpt", monitor=monitor, clock=FakeClock())
    stopped = runner.run()
    assert (stopped.status, stopped.steps_done, stopped.paused_until) == ("stopped", 11, None)

    fresh = build_job(5)
    seed_everything(9)
    done = TrainingRunner(fresh, checkpoint_dir=tmp_path / "ckpt", monitor=monitor, clock=FakeClock()).run(
        resume_from=tmp_path / "ckpt"
    )
    assert done.status == "completed" and done.steps_done == 24
    for got, want in zip(parameters(fresh), expected, strict=True):
        assert torch.equal(got, want)


def test_wait_in_process_sleeps_until_the_decision_then_continues(
    tmp_path: Path, monitor: PowerMonitor
) -> None:
    clock = FakeClock(tick=timedelta(minutes=7))  # time passes fast while the runner waits
    strategy = PauseAtSteps({3}, pause_for=timedelta(hours=1))
    job = build_job(1, epochs=1)
    runner = TrainingRunner(
        job, checkpoint_dir=tmp_path, strategy=strategy, clock=clock, monitor=monitor,
        decision_refresh_seconds=0, estimated_step_seconds=1.0, wait_poll_seconds=0.001,
    )  # fmt: skip
    strategy.progress = lambda: runner.steps_done
    result = runner.run(wait_in_process=True)
    assert result.status == "completed" and result.steps_done == 8
    assert result.report.pauses == 1
    assert runner.ledger is not None
    (pause,) = runner.ledger.pauses
    assert pause.until is not None and pause.end is not None
    assert pause.end >= pause.until  # it did not continue before the decision's time
    assert result.report.paused_seconds == (pause.end - pause.start).total_seconds() > 0


def test_max_steps_and_step_fn(tmp_path: Path, monitor: PowerMonitor) -> None:
    base = build_job(1)
    assert base.loss_fn is not None
    mse = base.loss_fn

    def step(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return mse(model(batch[0]), batch[1])

    job = TrainingJob(base.model, base.optimizer, base.data_loader, step_fn=step, epochs=5, max_steps=11)
    result = TrainingRunner(job, checkpoint_dir=tmp_path, monitor=monitor, clock=FakeClock()).run()
    assert (result.status, result.steps_done, result.epoch) == ("completed", 11, 1)
    assert result.last_loss is not None and result.last_loss > 0
