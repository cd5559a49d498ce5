"""Checkpoints are atomic: a process killed while writing one leaves the previous one loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from training_models import START, FakeClock, build_job

from carbon_sensors.errors import CheckpointError
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.training import TrainingRunner, find_checkpoint, load_checkpoint, save_checkpoint
from carbon_sensors.training.checkpoint import LATEST, list_checkpoints

HELPER = Path(__file__).with_name("kill_during_checkpoint.py")


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path: Path) -> None:
    ckpt, marker = tmp_path / "ckpt", tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, str(HELPER), str(ckpt), str(marker)], cwd=HELPER.parent)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, f"helper exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "helper never reached its second checkpoint"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    torn = [p for p in ckpt.iterdir() if p.name.endswith(".tmp") and p.name.startswith(".checkpoint-")]
    assert len(torn) == 1 and torn[0].stat().st_size > 0  # it really died mid-write
    assert [p.name for p in list_checkpoints(ckpt)] == ["checkpoint-0000000004.pt"]
    assert (ckpt / LATEST).read_text().strip() == "checkpoint-0000000004.pt"
    file, state = load_checkpoint(ckpt)
    assert file.name == "checkpoint-0000000004.pt" and state["carbon"]["progress"]["steps_done"] == 4

    job = build_job(3)
    runner = TrainingRunner(
        job, checkpoint_dir=ckpt, clock=FakeClock(START + timedelta(days=1)),
        monitor=PowerMonitor([EstimateMeter()], start=False),
    )  # fmt: skip
    result = runner.run(resume_from=ckpt)
    assert (result.status, result.steps_done) == ("completed", 24)
    # the energy the killed process spent after its last good checkpoint is still in the report
    assert any("measured after the last checkpoint" in f for f in result.report.fallbacks)
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(torn[0])


def test_only_the_newest_checkpoints_are_kept_and_latest_points_at_the_newest(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, {"format": 2, "step": torch.tensor(step)}, step=step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint-0000000002.pt",
        "checkpoint-0000000003.pt",
    ]
    assert find_checkpoint(tmp_path).name == "checkpoint-0000000003.pt"
    (tmp_path / LATEST).unlink()  # a lost pointer falls back to the newest complete file
    assert int(load_checkpoint(tmp_path)[1]["step"]) == 3


def test_missing_and_foreign_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        find_checkpoint(tmp_path)
    foreign = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a carbon-aware training checkpoint"):
        load_checkpoint(foreign)


def test_resuming_with_a_different_job_shape_is_refused(tmp_path: Path) -> None:
    monitor = PowerMonitor([EstimateMeter()], start=False)
    job = build_job(1, epochs=1)
    result = TrainingRunner(job, checkpoint_dir=tmp_path, clock=FakeClock(), monitor=monitor).run()
    other = build_job(1, epochs=1, loader_generator=True)  # the checkpoint has no loader generator state
    assert result.checkpoint_path is not None
    with pytest.raises(CheckpointError, match="generator state"):
        TrainingRunner(other, checkpoint_dir=tmp_path, monitor=monitor).run(
            resume_from=result.checkpoint_path
        )
