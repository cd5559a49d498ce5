"""Checkpoints mirrored through an fsspec filesystem: what one worker publishes another pulls and resumes.

A `file://` folder stands in for the bucket (the e2e tests use a real S3 API); two local folders stand in
for the two workers' disks.
"""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
import torch
from training_models import build_job, parameters

from carbon_sensors.checkpoint_store import CheckpointStore
from carbon_sensors.emissions import read_jsonl
from carbon_sensors.errors import CheckpointError
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.training import TrainingRunner
from carbon_sensors.training.mirror import CheckpointMirror


def mirror(bucket: Path, worker: Path) -> CheckpointMirror:
    fs = fsspec.filesystem("file")
    return CheckpointMirror(fs, str(bucket / "run"), (bucket / "run").as_uri(), worker)


def test_a_run_published_on_one_worker_resumes_on_another_with_all_its_energy(tmp_path: Path) -> None:
    monitor = PowerMonitor([EstimateMeter()], start=False)
    bucket, worker_a, worker_b = tmp_path / "bucket", tmp_path / "a", tmp_path / "b"
    on_a = mirror(bucket, worker_a)
    first = build_job(1, epochs=2)
    TrainingRunner(first, checkpoint_dir=worker_a, checkpoint_every_steps=4, monitor=monitor,
                   measure_every_seconds=0.0, on_checkpoint=on_a.publish).run()  # fmt: skip
    published = sorted(p.name for p in (bucket / "run").iterdir())
    assert published == ["checkpoint-0000000012.pt", "checkpoint-0000000016.pt", "emissions.jsonl"]  # pruned

    on_b = mirror(bucket, worker_b)
    assert on_b.pull() is None
    again = build_job(1, epochs=2)
    result = TrainingRunner(again, checkpoint_dir=worker_b, monitor=monitor).run(resume_from="latest")
    assert result.started_at_step == 16 and result.report.attempts == 2
    a_kwh = read_jsonl(worker_a / "emissions.jsonl").report().energy_kwh
    assert result.report.energy_kwh >= a_kwh > 0  # worker A's energy came along with its timeline
    for x, y in zip(parameters(first), parameters(again), strict=True):
        assert torch.equal(x, y)


def test_pull_merges_the_published_timeline_into_a_stale_local_one(tmp_path: Path) -> None:
    monitor = PowerMonitor([EstimateMeter()], start=False)
    bucket, worker = tmp_path / "bucket", tmp_path / "w"
    stale = tmp_path / "stale"
    TrainingRunner(
        build_job(1, epochs=1), checkpoint_dir=stale, monitor=monitor, measure_every_seconds=0.0
    ).run()
    newer = tmp_path / "newer"
    TrainingRunner(build_job(1, epochs=1), checkpoint_dir=newer, monitor=monitor, measure_every_seconds=0.0,
                   on_checkpoint=mirror(bucket, newer).publish).run()  # fmt: skip
    worker.mkdir()
    (worker / "emissions.jsonl").write_bytes((stale / "emissions.jsonl").read_bytes())
    (worker / "checkpoint-0000000099.pt").write_bytes(b"staged, never published")
    mirror(bucket, worker).pull()
    merged = read_jsonl(worker / "emissions.jsonl")
    own = read_jsonl(stale / "emissions.jsonl").intervals + read_jsonl(newer / "emissions.jsonl").intervals
    assert {(i.start, i.end) for i in merged.intervals} == {(i.start, i.end) for i in own}
    assert len(merged.intervals) == len({(i.start, i.end) for i in own})  # nothing twice
    assert not (worker / "checkpoint-0000000099.pt").exists()  # the store is the truth


def test_a_pause_checkpoint_missing_on_a_local_store_names_shared_or_object_storage(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "local"), "dag/run/train")
    elsewhere = Path(store.location) / "checkpoint-0000000004.pt"  # written on another worker's disk
    with pytest.raises(CheckpointError, match="not on this machine") as error:
        store.resume_point(str(elsewhere))
    assert "shared storage" in str(error.value) and "object storage" in str(error.value)
    assert "step 0" not in str(error.value)


def test_a_rerun_handed_a_stale_pause_checkpoint_resumes_from_the_newest(tmp_path: Path) -> None:
    """Reproduced: a rescheduled run resumed from its pause's checkpoint (step 4), trained on and crashed; its
    rerun gets the same resume_from, long pruned, and failed (remote: FileNotFoundError) every try."""
    store = CheckpointStore(str(tmp_path / "shared"), "flow/training")
    monitor = PowerMonitor([EstimateMeter()], start=False)
    TrainingRunner(build_job(1, epochs=2), checkpoint_dir=store.local_dir, checkpoint_every_steps=4,
                   monitor=monitor, measure_every_seconds=0.0).run()  # fmt: skip
    pause = Path(store.location) / "checkpoint-0000000004.pt"
    newest = Path(store.location) / "checkpoint-0000000016.pt"
    assert not pause.exists() and newest.is_file()  # the pause's checkpoint was pruned
    assert store.resume_point(str(pause)) == "latest"
    assert store.resume_point(str(newest)) == newest  # the newest named: resumed from as it is
    resumed = TrainingRunner(build_job(1, epochs=2), checkpoint_dir=store.local_dir, monitor=monitor)
    assert resumed.run(resume_from=store.resume_point(str(pause))).started_at_step == 16
