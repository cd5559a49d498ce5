"""The runner's contract: deadline guard, emissions with a real intensity source, validation, JSON results."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from training_models import START, AlwaysPause, FakeClock, build_job

from carbon_sensors.emissions import read_jsonl
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.training import TrainingJob, TrainingRunner


@pytest.fixture
def monitor() -> PowerMonitor:
    return PowerMonitor([EstimateMeter()], start=False)


def test_deadline_guard_clamps_a_pause_then_overrides_it(tmp_path: Path, monitor: PowerMonitor) -> None:
    clock = FakeClock()
    deadline = START + timedelta(hours=1)
    kw = {"checkpoint_dir": tmp_path, "strategy": AlwaysPause(hours=10), "deadline": deadline, "clock": clock,
          "monitor": monitor, "decision_refresh_seconds": 0.0, "estimated_step_seconds": 60.0}  # fmt: skip
    first = TrainingRunner(build_job(1), **kw).run()  # type: ignore[arg-type]
    # 24 steps x 60 s = 24 min of work, 26.4 min at most (10% margin): the latest start that finishes by
    # 01:00 is 00:33:36, not 10:00
    latest = START + timedelta(minutes=33, seconds=36)
    assert first.status == "paused" and first.paused_until == latest
    assert first.decision is not None and "to meet the deadline" in first.decision.reason
    clock.now = latest
    second = TrainingRunner(build_job(1), **kw).run(resume_from=tmp_path)  # type: ignore[arg-type]
    assert second.status == "completed" and second.steps_done == 24
    assert second.decision is not None
    assert second.decision.reason.startswith("deadline guard: 0:24:00 of work left")
    assert "running now to the end" in second.decision.reason
    assert any(f.startswith("strategy fallback: grid is dirty") for f in second.report.fallbacks)


def test_emissions_use_the_intensity_of_each_interval(tmp_path: Path, monitor: PowerMonitor) -> None:
    index = pd.date_range(START, periods=48, freq="1h")
    values = pd.Series([100.0 + 10 * (i % 24) for i in range(48)], index=index)
    provider = TraceProvider(signals={"XX": _signal(values)})
    clock = FakeClock(tick=timedelta(minutes=3))  # every clock read moves trace time on: intervals span hours
    runner = TrainingRunner(
        build_job(1), checkpoint_dir=tmp_path, zone="XX", intensity_source=provider, clock=clock, monitor=monitor,
        measure_every_seconds=0.0, pue=1.2,
    )  # fmt: skip
    result = runner.run()
    report = result.report.to_dict()
    assert result.status == "completed" and report["intervals"] > 20
    assert report["intensity_sources"] == ["hand-made"] and report["fallbacks"] == []
    assert runner.ledger is not None
    hand = sum(i.kwh * 1.2 * i.intensity for i in runner.ledger.intervals)
    assert report["emissions_g"] == pytest.approx(hand)
    assert len({round(i.intensity) for i in runner.ledger.intervals}) > 1  # intensity really varied
    assert report["run_now_emissions_g"] <= report["emissions_g"]  # intensity rises with time here
    assert report["energy_kwh_with_pue"] == pytest.approx(1.2 * report["energy_kwh"])
    for key in ("zone", "kind", "energy_kwh", "pue", "avg_intensity", "avoided_g", "paused_seconds", "pauses",
                "power_sources", "started_at", "finished_at"):  # fmt: skip
        assert key in report
    assert read_jsonl(Path(str(result.timeline_path))).report().to_dict() == report
    small = json.dumps(result.to_dict())
    assert len(small) < 20_000 and "tensor" not in small


def test_stop_before_the_first_step_returns_stopped_with_a_checkpoint(
    tmp_path: Path, monitor: PowerMonitor
) -> None:
    runner = TrainingRunner(build_job(1), checkpoint_dir=tmp_path, monitor=monitor, clock=FakeClock())
    runner.stop()
    result = runner.run()
    assert (result.status, result.steps_done) == ("stopped", 0)
    assert result.checkpoint_path is not None and Path(result.checkpoint_path).is_file()


def test_a_resumed_run_with_another_pue_is_refused(tmp_path: Path, monitor: PowerMonitor) -> None:
    TrainingRunner(build_job(1, epochs=1), checkpoint_dir=tmp_path, monitor=monitor, clock=FakeClock()).run()
    with pytest.raises(InvalidInputError, match=r"pue=1\.5 differs"):
        TrainingRunner(build_job(1, epochs=1), checkpoint_dir=tmp_path, monitor=monitor, pue=1.5).run(
            resume_from=tmp_path
        )


def test_bad_job_and_runner_arguments_are_named(tmp_path: Path) -> None:
    job = build_job(1)
    with pytest.raises(InvalidInputError, match="exactly one of step_fn"):
        TrainingJob(job.model, job.optimizer, job.data_loader)
    with pytest.raises(InvalidInputError, match="epochs=0"):
        TrainingJob(job.model, job.optimizer, job.data_loader, loss_fn=job.loss_fn, epochs=0)
    with pytest.raises(InvalidInputError, match="scheduler_interval='batch'"):
        TrainingJob(
            job.model, job.optimizer, job.data_loader, loss_fn=job.loss_fn, scheduler_interval="batch"
        )
    with pytest.raises(InvalidInputError, match="checkpoint_every_steps=0"):
        TrainingRunner(job, checkpoint_dir=tmp_path, checkpoint_every_steps=0)
    with pytest.raises(InvalidInputError, match="decision_refresh_seconds=-1"):
        TrainingRunner(job, checkpoint_dir=tmp_path, decision_refresh_seconds=-1)


def _signal(values: pd.Series):  # type: ignore[no-untyped-def]
    from carbon_sensors.signal import make_signal

    return make_signal(values, zone="XX", source="hand-made")
