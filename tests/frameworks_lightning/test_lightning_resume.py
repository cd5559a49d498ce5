"""CarbonAwareCallback under a replayed real grid: two pauses, fresh Trainers (one in a fresh process),
and the same parameters, bitwise, as an uninterrupted fit; the energy adds up over the segments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning_models import BATCHES, job, ram_watts, seed_everything
from replayed_grid import START, STEP, GridClock, parameters, session, strategy, wake_time

from carbon_sensors.emissions import JOULES_PER_KWH, read_jsonl
from carbon_sensors.training.checkpoint import LATEST

HERE = Path(__file__).parent


def uninterrupted(folder: Path, **loader_kw: bool) -> tuple[list[torch.Tensor], float]:
    clock = GridClock()
    fit = job(1, clock, **loader_kw)
    seed_everything(123)
    result = fit.train(session(folder, clock, None), None)
    assert (result.status, result.steps_done, result.epoch) == ("completed", 24, 3)
    return parameters(fit.model), result.report.energy_kwh


def segment_kwh(steps: int) -> float:
    return ram_watts() * steps * STEP.total_seconds() / JOULES_PER_KWH


@pytest.mark.parametrize(
    "loader_kw", [{}, {"loader_generator": True}], ids=["global-rng", "loader-generator"]
)
def test_two_pauses_resume_bitwise_in_fresh_trainers(tmp_path: Path, loader_kw: dict[str, bool]) -> None:
    expected, expected_kwh = uninterrupted(tmp_path / "ref", **loader_kw)

    pausing, clock, folder = strategy(), GridClock(), tmp_path / "ckpt"
    fit = job(1, clock, **loader_kw)
    seed_everything(123)
    result = fit.train(session(folder, clock, pausing), None)
    ends = [(result.status, result.steps_done, result.epoch)]
    energies = [result.report.energy_kwh]
    while result.status == "paused":
        assert result.paused_until is not None and result.checkpoint_path is not None
        json.dumps(result.to_dict())
        clock.now = wake_time(pausing, result.paused_until)
        fit = job(999, clock, **loader_kw)  # a fresh model, Trainer and RNG state: the checkpoint rules
        seed_everything(777)
        result = fit.train(session(folder, clock, pausing), "latest")
        ends.append((result.status, result.steps_done, result.epoch))
        energies.append(result.report.energy_kwh)

    # at the epoch 0/1 boundary (the grid turned dirty on its last batch), then mid-epoch 2
    assert ends == [("paused", 8, 1), ("paused", 20, 2), ("completed", 24, 3)]
    for got, want in zip(parameters(fit.model), expected, strict=True):
        assert torch.equal(got, want)
    segments = [energies[0], energies[1] - energies[0], energies[2] - energies[1]]
    assert segments == pytest.approx([segment_kwh(8), segment_kwh(12), segment_kwh(4)], rel=1e-9)
    report = result.report
    assert report.energy_kwh == pytest.approx(expected_kwh, rel=1e-9) == pytest.approx(sum(segments))
    assert report.pauses == 2 and report.submitted_at == START
    assert report.emissions_g > 0 and report.intensity_sources == ["electricitymaps-portal"]
    assert not any("re-run after a crash" in n for n in report.fallbacks)  # no tail left out of a checkpoint
    assert [e["epoch"] for e in result.epochs] == [0, 1, 2]
    assert [e["steps"] for e in result.epochs] == [BATCHES] * 3
    assert read_jsonl(folder / "emissions.jsonl").report().to_dict() == report.to_dict()
    assert (folder / LATEST).read_text().strip() == "checkpoint-0000000024.pt"


def test_a_resume_in_a_fresh_process_ends_bitwise_equal(tmp_path: Path) -> None:
    expected, _ = uninterrupted(tmp_path / "ref")
    pausing, clock, folder = strategy(), GridClock(), tmp_path / "ckpt"
    fit = job(1, clock)
    seed_everything(123)
    first = fit.train(session(folder, clock, pausing), None)
    assert (first.status, first.steps_done) == ("paused", 8)
    clock.now = wake_time(pausing, first.paused_until)  # type: ignore[arg-type]
    fit = job(999, clock)
    seed_everything(5)
    second = fit.train(session(folder, clock, pausing), first.checkpoint_path)
    assert (second.status, second.steps_done, second.started_at_step) == ("paused", 20, 8)

    out = tmp_path / "child.pt"
    wake = wake_time(pausing, second.paused_until)  # type: ignore[arg-type]
    run = subprocess.run(
        [sys.executable, str(HERE / "lightning_child.py"), str(folder), str(second.checkpoint_path),
         wake.isoformat(), str(out)],
        cwd=HERE, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},  # the child imports replayed_grid from tests/
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    child: dict[str, Any] = torch.load(out, weights_only=True)
    assert child["result"]["status"] == "completed" and child["result"]["started_at_step"] == 20
    for got, want in zip(child["parameters"], expected, strict=True):
        assert torch.equal(got, want)
    assert child["result"]["report"]["pauses"] == 2


def test_a_plain_dataloader_cannot_resume_mid_epoch_exactly(tmp_path: Path) -> None:
    """What the module docstring says: Lightning restarts a plain loader's epoch from a new shuffle."""
    expected, _ = uninterrupted(tmp_path / "ref", plain=True)
    pausing, clock, folder = strategy(), GridClock(), tmp_path / "ckpt"
    fit = job(1, clock, plain=True)
    seed_everything(123)
    result = fit.train(session(folder, clock, pausing), None)
    with pytest.warns(UserWarning, match="dataloader is not resumable"):  # the mid-epoch resume
        while result.status == "paused":
            clock.now = wake_time(pausing, result.paused_until)  # type: ignore[arg-type]
            fit = job(999, clock, plain=True)
            seed_everything(777)
            result = fit.train(session(folder, clock, pausing), "latest")
    assert result.status == "completed"
    assert not all(torch.equal(a, b) for a, b in zip(parameters(fit.model), expected, strict=True))


def test_uninterrupted_fits_differ_with_another_seed(tmp_path: Path) -> None:
    """Guards the bitwise tests: the parameters do depend on the RNG state the checkpoint must carry."""
    expected, _ = uninterrupted(tmp_path / "ref")
    clock = GridClock()
    fit = job(1, clock)
    seed_everything(124)
    fit.train(session(tmp_path / "other", clock, None), None)
    assert not all(torch.equal(a, b) for a, b in zip(parameters(fit.model), expected, strict=True))
