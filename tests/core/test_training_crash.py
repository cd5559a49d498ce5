"""Crash safety: a training process killed at any moment resumes from a checkpoint at most one interval old.

The trainers run in child processes forked by `crash_trainer.py` (one torch import for all of them) and are
ended with SIGKILL, as a lost worker, an OOM kill or a preempted machine ends them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from torch import nn
from training_models import build_job, parameters

from carbon_sensors.cli import main as cli
from carbon_sensors.emissions import read_jsonl
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.training import TrainingRunner
from carbon_sensors.training.checkpoint import list_checkpoints, load_newest
from carbon_sensors.training.runner import DEFAULT_CHECKPOINT_EVERY

pytestmark = pytest.mark.slow
HELPER = Path(__file__).with_name("crash_trainer.py")
RESUMED = re.compile(r"^resumed from .* step (\d+)$")
FRESH = "no checkpoint in"


class Trainers:
    """The forking helper: `start` a training child, read its lines, see it exit."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=HELPER.parent, bufsize=1,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(lambda line: line == "ready", timeout=120)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(
        self, wanted: Callable[[str], bool], timeout: float = 60, seen: list[str] | None = None
    ) -> str:
        """The next line for which `wanted` is true; every line read on the way goes into `seen`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no wanted line within {timeout} s; read {seen[-5:] if seen else []}"
                ) from None
            if seen is not None:
                seen.append(line)
            assert not line.startswith("error "), line
            if wanted(line):
                return line

    def start(self, folder: Path, every: int, measure: float, epochs: int) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {folder} {every} {measure} {epochs}\n")
        self.proc.stdin.flush()
        return int(self.expect(lambda line: line.startswith("pid ")).split()[1])

    def exit_code(self, pid: int, seen: list[str]) -> int:
        return int(self.expect(lambda line: line.startswith(f"exit {pid} "), seen=seen).split()[2])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def trainers() -> Iterator[Trainers]:
    helper = Trainers()
    yield helper
    helper.close()


def resumed_step(line: str) -> int:
    found = RESUMED.match(line)
    return int(found[1]) if found else 0


def is_start(line: str) -> bool:
    return RESUMED.match(line) is not None or line.startswith(FRESH)


def last_step(seen: list[str]) -> int:
    return max((int(line.split()[1]) for line in seen if line.startswith("at ")), default=0)


def test_sigkill_at_random_moments_loses_at_most_one_checkpoint_interval(
    trainers: Trainers, tmp_path: Path
) -> None:
    every, rng = 5, random.Random(20)
    folder = tmp_path / "ckpt"
    progress: int | None = None  # steps the killed child had started, as it printed them
    mid_write = 0
    for trial in range(21):
        pid = trainers.start(folder, every, 0.05, 2000)
        seen: list[str] = []
        step = resumed_step(trainers.expect(is_start, seen=seen))
        if progress is None:
            assert step == 0
        else:  # never older than one interval, never newer than what the killed child reached
            assert progress - every <= step <= progress + 1, (trial, progress, step)
        if trial == 20:
            trainers.expect(lambda line: line.startswith("at "), seen=seen)
        elif trial % 3 == 2:  # inside a checkpoint write
            trainers.expect(lambda line: line == "save", seen=seen)
            time.sleep(rng.uniform(0.0, 0.03))
        else:
            time.sleep(rng.uniform(0.02, 0.3))
        os.kill(pid, signal.SIGKILL)
        assert trainers.exit_code(pid, seen) == -signal.SIGKILL
        assert not any(line.startswith("done ") for line in seen), "a child finished before it was killed"
        mid_write += [line for line in seen if line == "save" or line.startswith("at ")][-1:] == ["save"]
        progress = max(step, last_step(seen))
    assert mid_write >= 5  # kills that really landed while a checkpoint was being written
    assert list(folder.glob(".checkpoint-*.tmp"))  # and left torn temp files, which are never loaded
    assert load_newest(folder) is not None


def test_a_crashed_attempts_energy_stays_in_the_resumed_report(
    trainers: Trainers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, epochs = tmp_path / "ckpt", 10
    # 5 ms windows: the 5 steps between the checkpoint at 40 and the kill (each sleeps >= 2 ms) surely close one
    pid = trainers.start(folder, 10, 0.005, epochs)
    seen: list[str] = []
    trainers.expect(lambda line: line == "at 45", seen=seen)
    os.kill(pid, signal.SIGKILL)
    assert trainers.exit_code(pid, seen) == -signal.SIGKILL
    crashed_copy = tmp_path / "crashed.jsonl"
    shutil.copy(folder / "emissions.jsonl", crashed_copy)
    crashed = read_jsonl(crashed_copy)

    job = build_job(1, epochs=epochs)
    runner: TrainingRunner = TrainingRunner(
        job,
        checkpoint_dir=folder,
        measure_every_seconds=0.02,
        monitor=PowerMonitor([EstimateMeter()], start=False),
    )
    result = runner.run(resume_from="latest")
    assert (result.status, result.steps_done) == ("completed", 80)
    report = result.report
    assert (report.attempts, report.crashed_attempts) == (2, 0 + 1)
    final = read_jsonl(folder / "emissions.jsonl")
    second_start = final.attempts[1].at
    resumed_kwh = sum(i.kwh for i in final.intervals if i.start >= second_start)
    crashed_kwh = sum(i.kwh for i in crashed.intervals)
    assert crashed_kwh > 0 and resumed_kwh > 0
    assert report.energy_kwh >= crashed_kwh + resumed_kwh - 1e-15
    assert {(i.start, i.end) for i in crashed.intervals} <= {(i.start, i.end) for i in final.intervals}
    assert any("re-run after a crash" in f for f in report.fallbacks)
    assert cli(["report", str(folder / "emissions.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(report.to_dict()))


def test_sigterm_stops_with_a_checkpoint_then_ends_the_process(trainers: Trainers, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    pid = trainers.start(folder, 1000, 0.05, 2000)
    seen: list[str] = []
    trainers.expect(lambda line: line == "at 30", seen=seen)
    os.kill(pid, signal.SIGTERM)
    assert trainers.exit_code(pid, seen) == -signal.SIGTERM  # the default handler, run after the checkpoint
    stopped = [line for line in seen if line.startswith("SIGTERM: stopped at step ")]
    assert stopped, seen[-5:]
    found = load_newest(folder)
    assert (
        found is not None and found[1]["carbon"]["progress"]["steps_done"] == int(stopped[0].split()[4]) >= 30
    )


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = PowerMonitor([EstimateMeter()], start=False)
    first = build_job(1, epochs=2)
    TrainingRunner(first, checkpoint_dir=tmp_path, checkpoint_every_steps=4, monitor=monitor).run()
    assert [p.name for p in list_checkpoints(tmp_path)][-1] == "checkpoint-0000000016.pt"
    newest = tmp_path / "checkpoint-0000000016.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # torn by a bad disk or a half-finished copy

    again = build_job(1, epochs=2)
    with caplog.at_level(logging.WARNING):
        result = TrainingRunner(again, checkpoint_dir=tmp_path, monitor=monitor).run(resume_from="latest")
    assert any("skipped checkpoint" in r.message and "0000000016" in r.message for r in caplog.records)
    assert result.steps_done == 16 and result.report.attempts == 2
    for a, b in zip(parameters(first), parameters(again), strict=True):
        assert torch.equal(a, b)  # steps 13-16 re-run from checkpoint 12 reach the same parameters


def test_timed_checkpoints_are_on_by_default_and_published_as_written(tmp_path: Path) -> None:
    monitor = PowerMonitor([EstimateMeter()], start=False)
    assert (
        TrainingRunner(build_job(1), checkpoint_dir=tmp_path / "d").session.settings.checkpoint_every
        == DEFAULT_CHECKPOINT_EVERY
    )
    assert timedelta(minutes=10) >= DEFAULT_CHECKPOINT_EVERY
    job = build_job(1, epochs=3)

    def slow_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)
        return nn.functional.mse_loss(output, target)

    job.loss_fn = slow_loss
    published: list[tuple[int, bool]] = []
    runner: TrainingRunner = TrainingRunner(
        job, checkpoint_dir=tmp_path / "t", checkpoint_every=timedelta(milliseconds=40), monitor=monitor,
        on_checkpoint=lambda ckpt, timeline: published.append((runner.steps_done, ckpt.is_file() and timeline.is_file())),
    )  # fmt: skip
    result = runner.run()
    assert result.steps_done == 24
    steps = [s for s, ok in published if ok]
    assert len(steps) == len(published) >= 3 and steps[-1] == 24 and steps[0] < 24
